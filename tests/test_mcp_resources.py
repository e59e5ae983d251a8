"""The trainer:// resources through an in-memory client, in both protocol modes: reads, listings,
templates, completion, errors, and the resource links in tool results."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_calls import call
from mcp_types import INVALID_PARAMS, BlobResourceContents, ResourceTemplateReference, TextResourceContents
from waiting import wait_until

from mcp_trainer.server import ServerConfig, build_server

pytestmark = pytest.mark.anyio

PNG = b"\x89PNG\r\n\x1a\n"
TEMPLATES = {
    "trainer://tasks/{task_id}",
    "trainer://tasks/{task_id}/logs",
    "trainer://models/{model_id}",
    "trainer://models/{model_id}/plots/{+plot}",
    "trainer://pipelines/{pipeline_id}",
}
UNKNOWN_TASK = "task_20990101T000000_00000000"


@pytest.fixture(params=["legacy", "auto"])
def mode(request: pytest.FixtureRequest) -> str:
    mode: str = request.param
    return mode


@pytest.fixture
async def client(queue_dir: Path, models_dir: Path, mode: str) -> AsyncIterator[Client]:
    server = build_server(ServerConfig(queue_dir=queue_dir, models_dir=models_dir, max_concurrent=2))
    async with Client(server, mode=mode) as c:  # type: ignore[arg-type]
        yield c


def tiny(data: Path, **extra: Any) -> dict[str, Any]:
    base = {"task_type": "svm_classification", "data_source": str(data), "target_column": "label"}
    return base | {"optimize_hyperparameters": False, "cv_folds": 2} | extra


async def trained(client: Client, data: Path) -> dict[str, Any]:
    """A completed task's status, once its model's plots are drawn too."""
    task_id = (await call(client, "submit_training_task", tiny(data)))["task_id"]
    done = await call(client, "wait_for_task", {"task_id": task_id, "timeout_s": 45})
    assert done["status"] == "completed", done

    async def drawn() -> bool:
        info = await call(client, "get_model_info", {"model_id": done["model_id"]})
        return not info["plots_being_drawn"]

    await wait_until(drawn)
    return done


async def read_json(client: Client, uri: str) -> dict[str, Any]:
    result = await client.read_resource(uri)
    (content,) = result.contents
    assert isinstance(content, TextResourceContents) and content.mime_type == "application/json"
    assert content.uri == uri
    data: dict[str, Any] = json.loads(content.text)
    return data


async def refusal(client: Client, uri: str) -> str:
    with pytest.raises(MCPError) as caught:
        await client.read_resource(uri)
    assert caught.value.code == INVALID_PARAMS
    assert "Traceback" not in caught.value.message
    return caught.value.message


async def test_the_templates_are_listed_with_their_descriptions_and_mime_types(client: Client) -> None:
    templates = {t.uri_template: t for t in (await client.list_resource_templates()).resource_templates}
    assert set(templates) == TEMPLATES
    assert all(t.description and t.mime_type for t in templates.values())
    assert templates["trainer://models/{model_id}/plots/{+plot}"].mime_type == "image/png"
    assert templates["trainer://tasks/{task_id}/logs"].mime_type == "text/plain"


async def test_the_listing_names_the_queue_and_the_newest_tasks_and_models(
    client: Client, blobs_csv: Path
) -> None:
    done = await trained(client, blobs_csv)
    waiting = await call(client, "submit_training_task", tiny(blobs_csv, name="second"))
    listed = {str(r.uri): r for r in (await client.list_resources()).resources}
    assert "trainer://queue" in listed
    assert f"trainer://tasks/{done['task_id']}" in listed
    assert listed[f"trainer://tasks/{waiting['task_id']}"].title == "second"
    assert f"trainer://models/{done['model_id']}" in listed
    assert all(r.mime_type == "application/json" for u, r in listed.items() if u.startswith("trainer://"))
    assert listed["ui://mcp-trainer/dashboard"].mime_type == "text/html;profile=mcp-app"  # the MCP App's page


async def test_a_task_its_log_its_model_and_a_plot_read_as_the_tools_return_them(
    client: Client, blobs_csv: Path, models_dir: Path
) -> None:
    done = await trained(client, blobs_csv)
    task_id, model_id = done["task_id"], done["model_id"]
    status = await call(client, "get_task_status", {"task_id": task_id})
    assert await read_json(client, f"trainer://tasks/{task_id}") == status

    (log,) = (await client.read_resource(f"trainer://tasks/{task_id}/logs")).contents
    assert isinstance(log, TextResourceContents) and log.mime_type == "text/plain"
    tool_lines = (await call(client, "get_task_logs", {"task_id": task_id, "tail": 200}))["lines"]
    assert log.text.splitlines() == tool_lines and any("completed" in line for line in tool_lines)

    info = await call(client, "get_model_info", {"model_id": model_id})
    assert await read_json(client, f"trainer://models/{model_id}") == info
    assert "confusion_matrix.png" in info["reports"]

    (plot,) = (await client.read_resource(f"trainer://models/{model_id}/plots/confusion_matrix")).contents
    assert isinstance(plot, BlobResourceContents) and plot.mime_type == "image/png"
    png = base64.b64decode(plot.blob)
    assert png.startswith(PNG)
    assert png == (models_dir / model_id / "reports" / "confusion_matrix.png").read_bytes()


async def test_the_queue_reads_as_its_status(client: Client, blobs_csv: Path) -> None:
    await trained(client, blobs_csv)
    moving = {"machine", "history", "owner_silent_s", "alerts"}  # the machine's load, and the clock
    tool = await call(client, "get_queue_status")
    resource = await read_json(client, "trainer://queue")
    assert set(resource) == set(tool)
    assert {k: v for k, v in resource.items() if k not in moving} == {
        k: v for k, v in tool.items() if k not in moving
    }
    assert resource["counts"]["completed"] == 1


async def test_a_pipeline_reads_as_its_status(client: Client, blobs_csv: Path) -> None:
    stages = [{"name": "fit", "task": tiny(blobs_csv)}]
    pipeline_id = (await call(client, "submit_pipeline", {"name": "one", "stages": stages}))["pipeline_id"]

    async def ended() -> bool:
        view = await call(client, "get_pipeline_status", {"pipeline_id": pipeline_id})
        return view["status"] == "completed"

    await wait_until(ended)
    tool = await call(client, "get_pipeline_status", {"pipeline_id": pipeline_id})
    assert await read_json(client, f"trainer://pipelines/{pipeline_id}") == tool


async def test_unknown_ids_plots_and_uris_are_clear_errors(client: Client, blobs_csv: Path) -> None:
    assert f"No task {UNKNOWN_TASK}" in await refusal(client, f"trainer://tasks/{UNKNOWN_TASK}")
    assert "is not a task id" in await refusal(client, "trainer://tasks/nonsense")
    assert "is not a task id" in await refusal(client, "trainer://tasks/nonsense/logs")
    assert "No model" in await refusal(client, "trainer://models/model_20990101T000000_00000000")
    assert "No pipeline" in await refusal(client, "trainer://pipelines/pipeline_20990101T000000_00000000")
    unknown = await refusal(client, "trainer://tasks")
    assert "Unknown resource" in unknown and "trainer://tasks/{task_id}" in unknown
    done = await trained(client, blobs_csv)
    model = done["model_id"]
    assert "Unknown plot 'nope'" in await refusal(client, f"trainer://models/{model}/plots/nope")
    assert "has no residuals plot" in await refusal(client, f"trainer://models/{model}/plots/residuals")
    assert "Unknown resource" in await refusal(client, f"trainer://models/{model}/plots/../metadata.json")


async def test_completion_offers_the_ids_that_match_newest_first(client: Client, blobs_csv: Path) -> None:
    done = await trained(client, blobs_csv)
    later = [(await call(client, "submit_training_task", tiny(blobs_csv)))["task_id"] for _ in range(2)]
    tasks = ResourceTemplateReference(uri="trainer://tasks/{task_id}")
    offered = (await client.complete(tasks, {"name": "task_id", "value": "task_"})).completion
    assert offered.values == [*reversed(later), done["task_id"]] and offered.has_more is False
    one = (await client.complete(tasks, {"name": "task_id", "value": done["task_id"][:-2]})).completion
    assert one.values == [done["task_id"]]
    none = (await client.complete(tasks, {"name": "task_id", "value": "task_1999"})).completion
    assert none.values == []

    models = ResourceTemplateReference(uri="trainer://models/{model_id}")
    found = (await client.complete(models, {"name": "model_id", "value": "model_"})).completion
    assert found.values == [done["model_id"]]

    plots = ResourceTemplateReference(uri="trainer://models/{model_id}/plots/{+plot}")
    drawn = await client.complete(plots, {"name": "plot", "value": ""}, {"model_id": done["model_id"]})
    assert "confusion_matrix" in drawn.completion.values and "residuals" not in drawn.completion.values
    roc = await client.complete(plots, {"name": "plot", "value": "ro"}, {"model_id": done["model_id"]})
    assert roc.completion.values == ["roc_curve"]

    pipelines = ResourceTemplateReference(uri="trainer://pipelines/{pipeline_id}")
    assert (await client.complete(pipelines, {"name": "pipeline_id", "value": ""})).completion.values == []


async def test_tool_results_link_the_resources_they_are_about_and_keep_their_structured_content(
    client: Client, blobs_csv: Path
) -> None:
    submitted = await client.call_tool("submit_training_task", tiny(blobs_csv))
    task_id = (submitted.structured_content or {})["task_id"]
    assert [b.type for b in submitted.content] == ["text", "resource_link", "resource_link"]
    assert json.loads(submitted.content[0].text) == submitted.structured_content  # type: ignore[union-attr]
    links = [str(b.uri) for b in submitted.content if b.type == "resource_link"]
    assert links == [f"trainer://tasks/{task_id}", f"trainer://tasks/{task_id}/logs"]

    done = await trained(client, blobs_csv)
    status = await client.call_tool("get_task_status", {"task_id": done["task_id"]})
    assert status.structured_content == await call(client, "get_task_status", {"task_id": done["task_id"]})
    uris = [str(b.uri) for b in status.content if b.type == "resource_link"]
    assert uris[:2] == [f"trainer://tasks/{done['task_id']}", f"trainer://tasks/{done['task_id']}/logs"]
    assert f"trainer://models/{done['model_id']}" in uris

    info = await client.call_tool("get_model_info", {"model_id": done["model_id"]})
    plots = [str(b.uri) for b in info.content if b.type == "resource_link" and b.mime_type == "image/png"]
    assert f"trainer://models/{done['model_id']}/plots/confusion_matrix" in plots
    for uri in plots:
        (content,) = (await client.read_resource(uri)).contents
        assert isinstance(content, BlobResourceContents) and base64.b64decode(content.blob).startswith(PNG)
    report = await client.call_tool("get_model_report", {"model_id": done["model_id"], "plots": []})
    assert [str(b.uri) for b in report.content if b.type == "resource_link"][1:] == plots
    queue = await client.call_tool("get_queue_status", {})
    assert [str(b.uri) for b in queue.content if b.type == "resource_link"] == ["trainer://queue"]
