"""The prompts for the common journeys: listed with their arguments, and the failure prompt built from the
task's own status and log."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from mcp import Client

from mcp_trainer import TaskStatus, TrainingService
from mcp_trainer.server import ServerConfig, build_server

pytestmark = pytest.mark.anyio


@pytest.fixture
async def client(queue_dir: Path, models_dir: Path) -> AsyncIterator[Client]:
    server = build_server(ServerConfig(queue_dir=queue_dir, models_dir=models_dir, execute=False))
    async with Client(server, mode="legacy") as c:
        yield c


def text_of(result: object) -> str:
    return "\n".join(m.content.text for m in result.messages)  # type: ignore[attr-defined]


async def test_the_journeys_are_listed_with_their_arguments(client: Client) -> None:
    listed = {p.name: p for p in (await client.list_prompts()).prompts}
    assert set(listed) == {"train_classifier", "compare_models", "why_did_task_fail"}
    arguments = {name: {(a.name, a.required) for a in p.arguments or []} for name, p in listed.items()}
    assert arguments["why_did_task_fail"] == {("task_id", True)}
    assert ("data_source", True) in arguments["train_classifier"]
    assert all(p.description for p in listed.values())


async def test_the_training_and_comparison_prompts_name_the_tools_to_call(client: Client) -> None:
    train = text_of(
        await client.get_prompt("train_classifier", {"data_source": "/d.csv", "target_column": "y"})
    )
    assert (
        "/d.csv" in train
        and "'y'" in train
        and "submit_training_task" in train
        and "auto_classification" in train
    )
    compare = text_of(
        await client.get_prompt("compare_models", {"data_source": "/d.csv", "target_column": "y"})
    )
    assert "compare_families" in compare and "submit_pipeline" in compare
    assert "list_models" in text_of(await client.get_prompt("compare_models", {}))


async def test_the_failure_prompt_carries_the_tasks_error_and_its_log(
    queue_dir: Path, models_dir: Path, make_csv: Callable[[str, list[str], list[list[object]]], Path]
) -> None:
    data = make_csv("two.csv", ["x", "label"], [[i, i % 2] for i in range(40)])
    spec = {"task_type": "svm_classification", "data_source": str(data), "target_column": "label"}
    async with TrainingService(queue_dir, models_dir, poll_interval_s=0.05) as svc:
        task = await svc.submit(spec | {"scoring": "roc_auc", "n_trials": 2, "cv_folds": 2})
        make_csv("two.csv", ["x", "label"], [[i, i % 3] for i in range(40)])
        done = await svc.wait(task.task_id, timeout_s=120)
        assert done.status is TaskStatus.FAILED
    server = build_server(ServerConfig(queue_dir=queue_dir, models_dir=models_dir, execute=False))
    async with Client(server, mode="legacy") as client:
        text = text_of(await client.get_prompt("why_did_task_fail", {"task_id": task.task_id}))
        assert (
            '"kind": "data_error"' in text and "roc_auc" in text and "last" in text and "retry_task" in text
        )
        missing = text_of(
            await client.get_prompt("why_did_task_fail", {"task_id": "task_20200101T000000_00000000"})
        )
        assert "cannot be read" in missing
