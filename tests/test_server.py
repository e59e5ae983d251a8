"""Every MCP tool through an in-memory client, in both protocol modes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp_calls import call, call_error

from mcp_trainer.server import MAX_WAIT_S, ServerConfig, build_server

pytestmark = pytest.mark.anyio

TOOLS = {
    "submit_pipeline",
    "get_pipeline_status",
    "list_pipelines",
    "cancel_pipeline",
    "retry_pipeline",
    "list_pipeline_templates",
    "submit_training_task",
    "get_task_status",
    "list_training_tasks",
    "cancel_training_task",
    "stop_training_task",
    "retry_task",
    "get_alerts",
    "get_queue_status",
    "wait_for_task",
    "get_task_logs",
    "get_search_spaces",
    "list_models",
    "get_model_info",
    "get_model_report",
    "predict",
    "delete_model",
    "submit_finetune_task",
    "generate",
    "submit_preprocess_task",
    "submit_evaluation_task",
    "submit_cleanup_task",
    "run_maintenance",
    "show_dashboard",
}


@pytest.fixture(params=["legacy", "auto"])
def mode(request: pytest.FixtureRequest) -> str:
    mode: str = request.param
    return mode


@pytest.fixture
async def client(queue_dir: Path, models_dir: Path, mode: str) -> AsyncIterator[Client]:
    server = build_server(ServerConfig(queue_dir=queue_dir, models_dir=models_dir, max_concurrent=2))
    async with Client(server, mode=mode) as c:  # type: ignore[arg-type]
        yield c


def flat_submit(data: Path, **extra: Any) -> dict[str, Any]:
    """The flat call agents already make."""
    return {
        "task_type": "svm_classification",
        "data_source": str(data),
        "target_column": "label",
        "kernel": "rbf",
        "optimize_hyperparameters": True,
        "n_trials": 4,
        "cv_folds": 3,
        "user_id": "u1",
        **extra,
    }


async def test_every_tool_is_listed_with_a_description_and_bounded_inputs(client: Client) -> None:
    tools = {t.name: t for t in (await client.list_tools()).tools}
    assert set(tools) == TOOLS
    for tool in tools.values():
        assert tool.description
    submit = tools["submit_training_task"].input_schema["properties"]
    assert submit["n_trials"]["maximum"] == 1000 and submit["n_trials"]["minimum"] == 1
    assert submit["cv_folds"]["maximum"] == 20
    assert tools["wait_for_task"].input_schema["properties"]["timeout_s"]["maximum"] == MAX_WAIT_S


async def test_flat_submit_returns_at_once_and_the_task_completes_with_a_model(
    client: Client, blobs_csv: Path, models_dir: Path
) -> None:
    submitted = await call(
        client, "submit_training_task", flat_submit(blobs_csv, priority="high", name="blobs")
    )
    assert submitted["status"] == "queued"
    assert submitted["queue_position"] in (None, 1)  # None once this server executes: a slot is free
    if submitted["queue_position"] is None:  # a free slot does not promise a start: resources may lack
        assert "it starts once the machine has the cores and memory it asks for" in submitted["message"]
    task_id = submitted["task_id"]

    progress: list[float] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(value)

    result = await client.call_tool(
        "wait_for_task", {"task_id": task_id, "timeout_s": 40}, progress_callback=on_progress
    )
    done = result.structured_content
    assert done is not None
    assert done["status"] == "completed", done
    assert done["progress"] == 100.0
    assert done["trial"] == 4 and done["n_trials"] == 4
    assert done["metrics"]["accuracy"] > 0.8
    assert progress and progress == sorted(progress)

    status = await call(client, "get_task_status", {"task_id": task_id})
    assert status["model_id"] == done["model_id"]
    assert status["name"] == "blobs" and status["user_id"] == "u1" and status["priority"] == "high"
    model_dir = models_dir / status["model_id"]
    meta = json.loads((model_dir / "metadata.json").read_text())
    assert meta["task_id"] == task_id
    assert meta["classes"] == ["blue", "green", "red"]
    assert (model_dir / "model.pkl").is_file()
    assert (model_dir / "reports" / "trials.csv").is_file()

    logs = await call(client, "get_task_logs", {"task_id": task_id, "tail": 5})
    assert logs["status"] == "completed"
    assert any("completed" in line for line in logs["lines"])


async def test_list_is_newest_first_filtered_and_paginated(client: Client, blobs_csv: Path) -> None:
    ids = []
    for user in ["a", "b", "a"]:
        sub = await call(
            client,
            "submit_training_task",
            flat_submit(blobs_csv, user_id=user, optimize_hyperparameters=False),
        )
        ids.append(sub["task_id"])
    page = await call(client, "list_training_tasks", {"limit": 2})
    assert [t["task_id"] for t in page["tasks"]] == [ids[2], ids[1]]
    assert page["total"] == 3 and page["next_cursor"]
    rest = await call(client, "list_training_tasks", {"limit": 2, "cursor": page["next_cursor"]})
    assert [t["task_id"] for t in rest["tasks"]] == [ids[0]]
    assert rest["next_cursor"] is None
    mine = await call(client, "list_training_tasks", {"user_id": "a"})
    assert [t["task_id"] for t in mine["tasks"]] == [ids[2], ids[0]]
    none = await call(client, "list_training_tasks", {"task_type": "svm_regression"})
    assert none["tasks"] == [] and none["total"] == 0


async def test_queue_status_counts_are_true_and_show_the_machine(client: Client, blobs_csv: Path) -> None:
    for _ in range(2):
        await call(client, "submit_training_task", flat_submit(blobs_csv))
    status = await call(client, "get_queue_status")
    assert status["concurrency_limit"] == 2
    assert sum(status["counts"].values()) == 2
    assert status["running"] + status["queued"] + status["counts"]["completed"] == 2
    assert status["running"] <= 2
    assert status["machine"]["cpu_count"] >= 1
    assert status["machine"]["disk_free_mb"] > 0


async def test_cancel_of_a_queued_task_is_immediate_and_a_second_cancel_is_an_error(
    queue_dir: Path, models_dir: Path, blobs_csv: Path, mode: str
) -> None:
    server = build_server(ServerConfig(queue_dir=queue_dir, models_dir=models_dir, execute=False))
    async with Client(server, mode=mode) as client:  # type: ignore[arg-type]
        task_id = (await call(client, "submit_training_task", flat_submit(blobs_csv)))["task_id"]
        cancelled = await call(client, "cancel_training_task", {"task_id": task_id})
        assert cancelled["status"] == "cancelled"
        assert cancelled["error"] is None
        message = await call_error(client, "cancel_training_task", {"task_id": task_id})
        assert "already cancelled" in message


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({"task_type": "svm_magic"}, "task_type"),
        ({"data_source": "/nonexistent/data.csv"}, "does not exist"),
        ({"target_column": "nope"}, "Its columns are"),
        ({"n_trials": 0}, "n_trials"),
        ({"cv_folds": 50}, "cv_folds"),
        ({"scoring": "r2"}, "scoring"),
        ({"priority": "urgent"}, "priority"),
    ],
)
async def test_bad_submit_is_a_tool_error_and_creates_no_task(
    client: Client, blobs_csv: Path, queue_dir: Path, args: dict[str, Any], expected: str
) -> None:
    message = await call_error(client, "submit_training_task", flat_submit(blobs_csv) | args)
    assert expected in message
    assert "Traceback" not in message
    assert not list(queue_dir.glob("*.json"))


@pytest.mark.parametrize("task_id", ["../../etc/passwd", "task_1", "", "task_20261122T143000_zzzzzzzz"])
async def test_malformed_task_ids_are_refused_by_every_tool(client: Client, task_id: str) -> None:
    for tool in ("get_task_status", "cancel_training_task", "wait_for_task", "get_task_logs"):
        message = await call_error(client, tool, {"task_id": task_id})
        assert "not a task id" in message, tool


async def test_unknown_task_id_says_so(client: Client) -> None:
    message = await call_error(client, "get_task_status", {"task_id": "task_20200101T000000_00000000"})
    assert "No task task_20200101T000000_00000000" in message


async def test_bad_cursor_and_status_filter_are_refused(client: Client) -> None:
    assert "cursor" in await call_error(client, "list_training_tasks", {"cursor": "garbage!"})
    result = await client.call_tool("list_training_tasks", {"status": "sleeping"})
    assert result.is_error


async def test_wait_returns_within_its_timeout_with_the_current_status(
    queue_dir: Path, models_dir: Path, blobs_csv: Path, mode: str
) -> None:
    server = build_server(ServerConfig(queue_dir=queue_dir, models_dir=models_dir, execute=False))
    async with Client(server, mode=mode) as client:  # type: ignore[arg-type]
        task_id = (await call(client, "submit_training_task", flat_submit(blobs_csv)))["task_id"]
        waited = await call(client, "wait_for_task", {"task_id": task_id, "timeout_s": 0.3})
        assert waited["status"] == "queued"
        assert "timeout_s" in await call_error(
            client, "wait_for_task", {"task_id": task_id, "timeout_s": 600}
        )


async def test_a_client_giving_up_on_a_wait_does_not_cancel_the_task(client: Client, blobs_csv: Path) -> None:
    import anyio

    task_id = (await call(client, "submit_training_task", flat_submit(blobs_csv, n_trials=6)))["task_id"]
    with anyio.move_on_after(0.2):
        await client.call_tool("wait_for_task", {"task_id": task_id, "timeout_s": 30})
    done = await call(client, "wait_for_task", {"task_id": task_id, "timeout_s": 40})
    assert done["status"] == "completed"
    assert done["cancel_requested"] is False
