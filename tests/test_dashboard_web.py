"""The dashboard's page and JSON API over real HTTP, beside /mcp: the page needs no token and the API does,
the same Host/Origin checks as /mcp, POSTs only as JSON, the tools' views and refusals in words, and
cancel and retry audited as the dashboard's."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from dashboard_helpers import Served, http_server

SEARCH = {"task_type": "svm_classification", "target_column": "label", "n_trials": 3}
UNKNOWN = "task_20261122T143000_8f3a2c1d"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One server for the module, with a token; it runs nothing, so a submitted task stays queued."""
    with http_server(tmp_path_factory.mktemp("dashboard_web"), "--no-execute") as server:
        yield server


@pytest.fixture
def api(served: Served) -> Iterator[httpx2.Client]:
    auth = {"Authorization": f"Bearer {served.token}"}
    with httpx2.Client(base_url=f"{served.url}/dashboard/api/", headers=auth, timeout=30) as client:
        yield client


def post(client: httpx2.Client, path: str, **headers: str) -> httpx2.Response:
    return client.post(path, content=b"{}", headers={"Content-Type": "application/json", **headers})


def test_the_page_is_served_without_the_token_and_the_api_only_with_it(served: Served) -> None:
    with httpx2.Client(base_url=served.url, timeout=30) as anonymous:
        page = anonymous.get("/dashboard")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        policy = page.headers["content-security-policy"]
        assert "default-src 'none'" in policy and "script-src 'sha256-" in policy
        assert "connect-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert 'data-transport="http"' in page.text
        slash = anonymous.get("/dashboard/")
        assert slash.status_code in (301, 307) and slash.headers["location"].endswith("/dashboard")
        assert anonymous.get("/dashboard/api/queue").status_code == 401
        assert post(anonymous, f"/dashboard/api/tasks/{UNKNOWN}/cancel").status_code == 401
        wrong = {"Authorization": "Bearer not-the-token"}
        assert anonymous.get("/dashboard/api/queue", headers=wrong).status_code == 401
        queue = anonymous.get("/dashboard/api/queue", headers={"Authorization": f"Bearer {served.token}"})
    assert queue.status_code == 200
    assert {"running", "queued", "machine", "alerts", "history"} <= set(queue.json())
    assert queue.headers["cache-control"] == "no-store"


def test_cancel_and_retry_from_the_api_change_the_task_and_are_audited_as_the_dashboards(
    served: Served, api: httpx2.Client, blobs_csv: Path
) -> None:
    task_id = served.submit({**SEARCH, "data_source": str(blobs_csv)})
    listed = api.get("tasks", params={"limit": 5}).json()
    assert task_id in [t["task_id"] for t in listed["tasks"]]
    assert api.get(f"tasks/{task_id}").json()["status"] == "queued"
    assert api.get(f"tasks/{task_id}/logs", params={"tail": 10}).json() == {
        "task_id": task_id,
        "status": "queued",
        "lines": [],
    }
    assert api.get("alerts", params={"min_severity": "warning"}).status_code == 200

    cancelled = post(api, f"tasks/{task_id}/cancel", Origin=served.url)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    again = post(api, f"tasks/{task_id}/cancel")
    assert again.status_code == 409
    assert again.json()["error"] == "InvalidStateError" and "cancelled" in again.json()["message"]
    retried = post(api, f"tasks/{task_id}/retry")
    assert retried.status_code == 200 and retried.json()["status"] == "queued"

    lines = (served.queue / "audit.jsonl").read_text().splitlines()
    entries = [json.loads(line) for line in lines if task_id in line]
    dashboard = [e for e in entries if e["actor"]["via"] == "dashboard"]
    assert [(e["call"], e["actor"]["tool"]) for e in dashboard] == [
        ("cancel", "cancel"),
        ("cancel", "cancel"),
        ("retry", "retry"),
    ]
    assert "outcome" in dashboard[1]  # the second cancel was refused, and the log says so
    assert all(e["actor"]["address"].startswith("127.0.0.1:") for e in dashboard)


def test_a_foreign_origin_another_host_or_a_post_that_is_not_json_is_refused_and_changes_nothing(
    served: Served, api: httpx2.Client, blobs_csv: Path
) -> None:
    task_id = served.submit({**SEARCH, "data_source": str(blobs_csv)})
    assert post(api, f"tasks/{task_id}/cancel", Origin="http://evil.example").status_code == 403
    assert post(api, f"tasks/{task_id}/cancel", Host="evil.example:80").status_code == 421
    form = api.post(f"tasks/{task_id}/cancel", content=b"x=1", headers={"Content-Type": "text/plain"})
    assert form.status_code == 400
    assert api.get("queue", headers={"Host": "evil.example:80"}).status_code == 421
    assert api.get(f"{served.url}/dashboard", headers={"Origin": "http://evil.example"}).status_code == 403
    assert api.get(f"tasks/{task_id}").json()["status"] == "queued"


@pytest.mark.parametrize(
    ("path", "params", "status", "words"),
    [
        (f"tasks/{UNKNOWN}", {}, 404, "No task"),
        ("tasks/not-a-task", {}, 400, "not a task id"),
        ("tasks", {"limt": "5"}, 400, "Unknown query parameter 'limt'"),
        ("tasks", {"limit": "0"}, 400, "limit must be between 1 and"),
        ("tasks", {"limit": "many"}, 400, "limit must be a whole number"),
        ("tasks", {"status": "sleeping"}, 400, "status"),
        (f"tasks/{UNKNOWN}/logs", {"tail": "0"}, 400, "tail must be between 1 and"),
        ("alerts", {"min_severity": "loud"}, 400, "min_severity must be one of"),
        ("queue", {"verbose": "1"}, 400, "This call takes: none"),
    ],
)
def test_the_api_refuses_what_it_cannot_use_in_words(
    api: httpx2.Client, path: str, params: dict[str, str], status: int, words: str
) -> None:
    response = api.get(path, params=params)
    assert response.status_code == status, response.text
    body = response.json()
    assert words in body["message"] + " " + (body["hint"] or ""), body
    assert "Traceback" not in response.text and "pydantic" not in response.text


def test_without_a_token_the_api_answers_on_loopback(tmp_path: Path) -> None:
    with http_server(tmp_path, "--no-execute", "--no-token") as server, httpx2.Client(timeout=30) as client:
        assert client.get(f"{server.url}/dashboard/api/queue").status_code == 200
