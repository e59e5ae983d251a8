"""The preprocess, evaluation and cleanup submit tools through an in-memory MCP client: they queue tasks
with their arguments, refuse bad ones in sentences, take no GPU options, and a completed task's status
carries its outputs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from mcp import Client
from mcp_calls import call, call_error

from mcp_trainer.records import TaskRecord
from mcp_trainer.server import ServerConfig, build_server
from mcp_trainer.specs.preprocess import PreprocessSpec

pytestmark = pytest.mark.anyio
PYDANTIC_WORDING = ("validation error", "errors.pydantic.dev", "Input should", "[type=", "Field required")


@pytest.fixture
async def client(queue_dir: Path, models_dir: Path) -> AsyncIterator[Client]:
    server = build_server(ServerConfig(queue_dir=queue_dir, models_dir=models_dir, execute=False))
    async with Client(server, mode="legacy") as c:
        yield c


async def test_a_preprocess_call_queues_a_task_with_its_row_conditions(
    client: Client, blobs_csv: Path, queue_dir: Path
) -> None:
    args = {
        "task_type": "preprocess",
        "data_source": str(blobs_csv),
        "target_column": "label",
        "filter": [
            {"column": "x1", "op": ">", "value": 0},
            {"column": "shade", "op": "in", "value": ["a", "b"]},
        ],
        "test_size": 0.3,
        "user_id": "u1",
    }
    task_id = (await call(client, "submit_preprocess_task", args))["task_id"]
    record = TaskRecord.model_validate_json((queue_dir / f"{task_id}.json").read_text())
    assert isinstance(record.spec, PreprocessSpec) and record.user_id == "u1"
    assert [c.describe() for c in record.spec.filter] == ["x1 > 0.0", "shade in ['a', 'b']"]


@pytest.mark.parametrize(
    ("tool", "args", "words"),
    [
        (
            "submit_preprocess_task",
            {"filter": [{"column": "x1", "op": "~"}]},
            "filter[0] must be one of '=='",
        ),
        ("submit_preprocess_task", {"gpu_count": 1}, "unknown parameter 'gpu_count'"),
        (
            "submit_preprocess_task",
            {"sample_n": 5, "sample_fraction": 0.5},
            "give sample_n or sample_fraction",
        ),
        ("submit_evaluation_task", {"model_id": "model_20261122T143000_8f3a2c1d"}, "No model model_2026"),
        ("submit_evaluation_task", {"model_ids": []}, "model_ids must be at least 1 items long"),
        ("submit_cleanup_task", {}, "name task_ids, or older_than_days, or both"),
        ("submit_cleanup_task", {"task_ids": ["task_20261122T143000_8f3a2c1d"]}, "No task task_2026"),
    ],
)
async def test_bad_arguments_are_refused_in_sentences_and_nothing_is_queued(
    client: Client, blobs_csv: Path, tool: str, args: dict[str, object], words: str
) -> None:
    base = {
        "submit_preprocess_task": {"task_type": "preprocess", "data_source": str(blobs_csv)},
        "submit_evaluation_task": {"task_type": "evaluate", "data_source": str(blobs_csv)},
        "submit_cleanup_task": {"task_type": "cleanup"},
    }[tool]
    message = await call_error(client, tool, {**base, **args})
    assert words in message
    for wording in PYDANTIC_WORDING:
        assert wording not in message
    assert (await call(client, "list_training_tasks", {}))["total"] == 0


async def test_a_completed_preprocess_tasks_status_names_its_files(
    queue_dir: Path, models_dir: Path, blobs_csv: Path
) -> None:
    server = build_server(ServerConfig(queue_dir=queue_dir, models_dir=models_dir))
    async with Client(server, mode="legacy") as c:
        args = {
            "task_type": "preprocess",
            "data_source": str(blobs_csv),
            "sample_n": 30,
            "output_format": "csv",
        }
        task_id = (await call(c, "submit_preprocess_task", args))["task_id"]
        status = await call(c, "wait_for_task", {"task_id": task_id, "timeout_s": 40})
    assert status["status"] == "completed" and status["model_id"] is None
    assert status["outputs"]["output_path"] == str(queue_dir.resolve() / "datasets" / task_id / "data.csv")
    assert status["outputs"]["n_rows"] == 30 and status["outputs"]["columns"] == [
        "x1",
        "x2",
        "shade",
        "label",
    ]
