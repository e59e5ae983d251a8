"""The Python API without MCP: the same capabilities a program imports."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from pathlib import Path

import anyio
import joblib
import pandas as pd
import pytest

import mcp_trainer
from mcp_trainer import InvalidInputError, InvalidStateError, TaskNotFoundError, TaskStatus, TrainingService
from mcp_trainer.files import sha256_of

pytestmark = pytest.mark.anyio


def test_public_surface_is_exactly_all() -> None:
    public = {
        name
        for name, value in vars(mcp_trainer).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }
    assert public == set(mcp_trainer.__all__) - {"__version__"}
    assert all(hasattr(mcp_trainer, name) for name in mcp_trainer.__all__)


async def test_classification_with_a_string_target_and_a_categorical_feature_saves_a_usable_model(
    queue_dir: Path, models_dir: Path, blobs_csv: Path
) -> None:
    async with TrainingService(queue_dir, models_dir) as svc:
        task = await svc.submit(
            {
                "task_type": "svm_classification",
                "data_source": str(blobs_csv),
                "target_column": "label",
                "n_trials": 5,
                "cv_folds": 3,
            },
            name="blobs",
        )
        done = await svc.wait(task.task_id, timeout_s=60)
    assert done.status is TaskStatus.COMPLETED
    assert done.model_id is not None
    model_dir = models_dir / done.model_id
    meta = json.loads((model_dir / "metadata.json").read_text())
    assert meta["model_sha256"] == sha256_of(model_dir / "model.pkl")
    assert meta["features"]["types"] == {"x1": "numeric", "x2": "numeric", "shade": "categorical"}
    assert meta["n_trials_completed"] == 5
    assert set(meta["versions"]) >= {"scikit-learn", "optuna", "python"}
    assert meta["data"]["sha256"] == sha256_of(blobs_csv)
    assert (model_dir / "reports" / "summary.md").read_text().startswith(f"# {done.model_id}")
    trials = pd.read_csv(model_dir / "reports" / "trials.csv")
    assert len(trials) == 5
    model = joblib.load(model_dir / "model.pkl")
    frame = pd.read_csv(blobs_csv).drop(columns="label")
    assert set(model.predict(frame)) <= {"red", "green", "blue"}


async def test_multi_output_regression_without_a_search_uses_the_given_parameters(
    queue_dir: Path, models_dir: Path, regression_csv: Path
) -> None:
    async with TrainingService(queue_dir, models_dir) as svc:
        task = await svc.submit(
            {
                "task_type": "svm_regression",
                "data_source": str(regression_csv),
                "target_column": ["y1", "y2"],
                "optimize_hyperparameters": False,
                "kernel": "linear",
                "C": 10.0,
                "epsilon": 0.05,
            },
        )
        done = await svc.wait(task.task_id, timeout_s=60)
    assert done.status is TaskStatus.COMPLETED
    assert done.metrics is not None and done.metrics["r2"] > 0.9
    meta = json.loads((models_dir / str(done.model_id) / "metadata.json").read_text())
    assert meta["best_params"] == {"kernel": "linear", "C": 10.0, "epsilon": 0.05}
    assert meta["target"] == ["y1", "y2"] and meta["cv_score"] is None


async def test_priorities_order_the_queue_and_positions_are_reported(
    queue_dir: Path, models_dir: Path, blobs_csv: Path
) -> None:
    spec = {"task_type": "svm_classification", "data_source": str(blobs_csv), "target_column": "label"}
    async with TrainingService(queue_dir, models_dir, execute=False) as svc:
        low = await svc.submit(spec, priority="low")
        normal = await svc.submit(spec)
        high = await svc.submit(spec, priority="high")
        assert [(await svc.status(t.task_id)).queue_position for t in (high, normal, low)] == [1, 2, 3]
        # A submit's answer counts its own position (one pass, not a ranking of the whole queue): the same
        # as the status ranks it, whatever its priority.
        for priority, expected in [("normal", 3), ("low", 5), ("high", 2)]:
            answer = await svc.submit(spec, priority=priority)
            assert answer.queue_position == expected
            assert (await svc.status(answer.task_id)).queue_position == expected
        status = await svc.queue_status()
        assert status.next_up[0] == high.task_id and status.queued == 6 and status.running == 0


async def test_a_task_that_starts_at_once_has_no_queue_position_and_the_next_one_waits_first_in_line(
    queue_dir: Path, models_dir: Path, blobs_csv: Path, slow_csv: Path
) -> None:
    slow = {"task_type": "svm_classification", "data_source": str(slow_csv), "target_column": "label"}
    async with TrainingService(queue_dir, models_dir, max_concurrent=1, poll_interval_s=0.05) as svc:
        with anyio.fail_after(10):
            while not svc.is_owner:
                await anyio.sleep(0.02)
        first = await svc.submit({**slow, "n_trials": 200})
        assert first.queue_position is None  # a slot is free: it starts now, nothing ahead of it
        with anyio.fail_after(30):
            while (await svc.status(first.task_id)).status is not TaskStatus.RUNNING:
                await anyio.sleep(0.02)
        second = await svc.submit({**slow, "data_source": str(blobs_csv)})
        assert second.queue_position == 1
        await svc.cancel(second.task_id)
        await svc.cancel(first.task_id)


async def test_api_errors_are_typed_and_change_nothing(
    queue_dir: Path, models_dir: Path, blobs_csv: Path
) -> None:
    async with TrainingService(queue_dir, models_dir, execute=False) as svc:
        with pytest.raises(InvalidInputError, match="Unknown task_type"):
            await svc.submit(
                {"task_type": "xgboost", "data_source": str(blobs_csv), "target_column": "label"}
            )
        with pytest.raises(InvalidInputError, match="priority must be one of 'high', 'normal', 'low'"):
            await svc.submit(
                {"task_type": "svm_classification", "data_source": str(blobs_csv), "target_column": "label"},
                priority="urgent",
            )
        with pytest.raises(TaskNotFoundError):
            await svc.status("task_20200101T000000_00000000")
        with pytest.raises(InvalidInputError, match="limit"):
            await svc.list_tasks(limit=0)
        assert (await svc.list_tasks()).total == 0
        task = await svc.submit(
            {"task_type": "svm_classification", "data_source": str(blobs_csv), "target_column": "label"}
        )
        await svc.cancel(task.task_id)
        with pytest.raises(InvalidStateError, match="already cancelled"):
            await svc.cancel(task.task_id)
        assert (await svc.record(task.task_id)).status is TaskStatus.CANCELLED


async def test_a_failing_task_reports_a_classified_actionable_error(
    queue_dir: Path, models_dir: Path, make_csv: Callable[[str, list[str], list[list[object]]], Path]
) -> None:
    maker = make_csv
    rows: list[list[object]] = [[i, i % 2] for i in range(40)]
    data = maker("ok.csv", ["x", "label"], rows)
    async with TrainingService(queue_dir, models_dir) as svc:
        task = await svc.submit(
            {
                "task_type": "svm_classification",
                "data_source": str(data),
                "target_column": "label",
                "scoring": "roc_auc",
                "n_trials": 2,
                "cv_folds": 2,
            }
        )
        # The file changes after submission: a three-class target cannot be scored by roc_auc.
        maker("ok.csv", ["x", "label"], [[i, i % 3] for i in range(40)])
        done = await svc.wait(task.task_id, timeout_s=60)
    assert done.status is TaskStatus.FAILED
    assert done.error is not None and done.error.kind.value == "data_error"
    assert "roc_auc" in done.error.message and done.error.hint
    assert done.attempts == 1  # a data error is not retried
