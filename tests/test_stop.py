"""stop_training_task: end a running search now and finish it with the best trial so far."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp_calls import call, call_error
from waiting import wait_until

from mcp_trainer import InvalidStateError, TaskStatus, TrainingService
from mcp_trainer.artifacts.model_dir import model_dir, read_metadata
from mcp_trainer.server import ServerConfig, build_server

pytestmark = pytest.mark.anyio


def long_search(csv: Path) -> dict[str, Any]:
    return {
        "task_type": "svm_classification",
        "data_source": str(csv),
        "target_column": "label",
        "n_trials": 200,
        "cv_folds": 3,
        "n_parallel_trials": 1,
    }


async def test_stopping_a_search_keeps_its_best_trial_and_saves_the_model(
    queue_dir: Path, models_dir: Path, slow_csv: Path
) -> None:
    async with TrainingService(queue_dir, models_dir, poll_interval_s=0.05) as svc:
        task_id = (await svc.submit(long_search(slow_csv))).task_id

        async def two_trials() -> bool:
            return ((await svc.status(task_id)).trial or 0) >= 2

        await wait_until(two_trials)
        stopping = await svc.stop(task_id)
        assert stopping.stop_requested and stopping.status is TaskStatus.RUNNING
        done = await svc.wait(task_id, timeout_s=60)
    assert done.status is TaskStatus.COMPLETED, done.error
    assert done.model_id is not None and done.metrics and done.metrics["accuracy"] > 0
    meta = read_metadata(models_dir, done.model_id)
    assert 2 <= meta["n_trials_completed"] < 200
    assert meta["stopped_early"] == "stop_training_task"
    summary = (model_dir(models_dir, done.model_id) / "reports" / "summary.md").read_text()
    assert "ended early by stop_training_task" in summary


async def test_stop_refuses_a_task_that_has_not_started_or_has_ended(
    queue_dir: Path, models_dir: Path, blobs_csv: Path
) -> None:
    async with TrainingService(queue_dir, models_dir, execute=False) as svc:
        queued = (await svc.submit(long_search(blobs_csv))).task_id
        with pytest.raises(InvalidStateError, match="has not started"):
            await svc.stop(queued)
        await svc.cancel(queued)
        with pytest.raises(InvalidStateError, match="already cancelled"):
            await svc.stop(queued)
        assert not (await svc.status(queued)).stop_requested


async def test_a_stop_asked_through_another_server_reaches_the_one_that_runs_the_task(
    queue_dir: Path, models_dir: Path, slow_csv: Path
) -> None:
    async with TrainingService(queue_dir, models_dir, poll_interval_s=0.05) as owner:
        task_id = (await owner.submit(long_search(slow_csv))).task_id
        server = build_server(ServerConfig(queue_dir=queue_dir, models_dir=models_dir, execute=False))
        async with Client(server, mode="legacy") as client:

            async def a_trial() -> bool:
                return ((await owner.status(task_id)).trial or 0) >= 1

            await wait_until(a_trial)
            stopping = await call(client, "stop_training_task", {"task_id": task_id})
            assert stopping["stop_requested"] is True
            done = await owner.wait(task_id, timeout_s=60)
            assert done.status is TaskStatus.COMPLETED, done.error
            message = await call_error(client, "stop_training_task", {"task_id": task_id})
            assert "already completed" in message and "model stays available" in message
