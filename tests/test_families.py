"""Every model family trains and predicts; the search spaces are readable and enforced."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from mcp import Client

from mcp_trainer import InvalidInputError, TaskStatus, TrainingService
from mcp_trainer.server import ServerConfig, build_server
from mcp_trainer.specs.spaces import FAMILIES, TASK_FAMILIES

pytestmark = pytest.mark.anyio

CLASSIFIERS = [t for t, (f, k) in TASK_FAMILIES.items() if k == "classification" and f not in ("svm", "auto")]
REGRESSORS = [t for t, (f, k) in TASK_FAMILIES.items() if k == "regression" and f not in ("svm", "auto")]


async def test_every_family_trains_and_its_model_predicts(
    queue_dir: Path, models_dir: Path, blobs_csv: Path, regression_csv: Path
) -> None:
    small = {"n_trials": 2, "cv_folds": 3}
    async with TrainingService(queue_dir, models_dir, max_concurrent=2) as svc:
        tasks = {
            t: (
                await svc.submit(
                    {"task_type": t, "data_source": str(blobs_csv), "target_column": "label", **small}
                )
            ).task_id
            for t in CLASSIFIERS
        }
        tasks |= {
            t: (
                await svc.submit(
                    {
                        "task_type": t,
                        "data_source": str(regression_csv),
                        "target_column": ["y1", "y2"],
                        **small,
                    }
                )
            ).task_id
            for t in REGRESSORS
        }
        await svc.drain(timeout_s=300)
        views = {t: await svc.status(task_id) for t, task_id in tasks.items()}
    for task_type, view in views.items():
        assert view.status is TaskStatus.COMPLETED, (task_type, view.error)
        assert view.model_id is not None
        model = joblib.load(models_dir / view.model_id / "model.pkl")
        if task_type in CLASSIFIERS:
            assert view.metrics is not None and view.metrics["accuracy"] > 0.7, task_type
            frame = pd.read_csv(blobs_csv).drop(columns="label")
            assert set(model.predict(frame)) <= {"red", "green", "blue"}
        else:
            assert view.metrics is not None and view.metrics["r2"] > 0.5, task_type
            frame = pd.read_csv(regression_csv).drop(columns=["y1", "y2"])
            assert model.predict(frame).shape == (len(frame), 2)
        meta = json.loads((models_dir / view.model_id / "metadata.json").read_text())
        assert meta["family"] == TASK_FAMILIES[task_type][0]
        assert set(meta["best_params"]) <= set(FAMILIES[meta["family"]].params)


async def test_auto_searches_across_families_and_keeps_the_best(
    queue_dir: Path, models_dir: Path, blobs_csv: Path
) -> None:
    async with TrainingService(queue_dir, models_dir) as svc:
        task = await svc.submit(
            {
                "task_type": "auto_classification",
                "data_source": str(blobs_csv),
                "target_column": "label",
                "families": ["knn", "logistic"],
                "n_trials": 6,
                "cv_folds": 3,
            }
        )
        done = await svc.wait(task.task_id, timeout_s=120)
    assert done.status is TaskStatus.COMPLETED, done.error
    assert done.model_id is not None
    meta = json.loads((models_dir / done.model_id / "metadata.json").read_text())
    assert meta["family"] in ("knn", "logistic")
    trials = pd.read_csv(models_dir / done.model_id / "reports" / "trials.csv")
    assert set(trials["params_family"]) <= {"knn", "logistic"} and len(trials) == 6
    assert meta["cv_score"] == pytest.approx(trials["value"].max(), abs=1e-6)


async def test_fixed_params_and_narrowed_ranges_are_respected(
    queue_dir: Path, models_dir: Path, blobs_csv: Path
) -> None:
    async with TrainingService(queue_dir, models_dir) as svc:
        task = await svc.submit(
            {
                "task_type": "random_forest_classification",
                "data_source": str(blobs_csv),
                "target_column": "label",
                "params": {"n_estimators": 60},
                "search_space": {"max_depth": {"low": 3, "high": 5}, "max_features": ["sqrt"]},
                "n_trials": 4,
                "cv_folds": 3,
            }
        )
        done = await svc.wait(task.task_id, timeout_s=120)
    assert done.status is TaskStatus.COMPLETED, done.error
    trials = pd.read_csv(models_dir / str(done.model_id) / "reports" / "trials.csv")
    assert "params_n_estimators" not in trials  # fixed, not searched
    assert trials["params_max_depth"].between(3, 5).all()
    assert set(trials["params_max_features"]) == {"sqrt"}
    meta = json.loads((models_dir / str(done.model_id) / "metadata.json").read_text())
    assert meta["best_params"]["n_estimators"] == 60


async def test_a_search_past_its_timeout_stops_and_keeps_its_best_model(
    queue_dir: Path, models_dir: Path, slow_csv: Path
) -> None:
    async with TrainingService(queue_dir, models_dir) as svc:
        task = await svc.submit(
            {
                "task_type": "svm_classification",
                "data_source": str(slow_csv),
                "target_column": "label",
                "n_trials": 1000,
                "cv_folds": 3,
                "timeout_s": 3,
            }
        )
        done = await svc.wait(task.task_id, timeout_s=60)
    assert done.status is TaskStatus.COMPLETED, done.error
    assert done.model_id is not None
    meta = json.loads((models_dir / done.model_id / "metadata.json").read_text())
    assert 1 <= meta["n_trials_completed"] < 1000
    assert meta["timings_s"]["search"] < 20


async def test_timeout_s_ends_the_trials_in_flight_and_fails_as_timeout_when_none_finished(
    queue_dir: Path, models_dir: Path, tmp_path: Path
) -> None:
    # 8,000 noise rows: one cross-validation of this SVC takes ~20 s on the 2-core machine (3,000 rows
    # took ~1.4 s, too close to the limit), so no trial can finish inside the 1.5 s timeout.
    rng = np.random.default_rng(2)
    frame = pd.DataFrame(rng.normal(size=(8000, 20)).round(4), columns=[f"f{i}" for i in range(20)])
    frame["label"] = rng.choice(["p", "q"], size=len(frame))
    noise_csv = tmp_path / "noise.csv"
    frame.to_csv(noise_csv, index=False)
    async with TrainingService(queue_dir, models_dir) as svc:
        task = await svc.submit(
            {
                "task_type": "svm_classification",
                "data_source": str(noise_csv),
                "target_column": "label",
                "kernel": "poly",
                "gamma": 5.0,
                "degree": 5,
                "C": 1000.0,  # each trial's cross-validation runs far longer than the whole timeout
                "n_trials": 5,
                "cv_folds": 5,
                "timeout_s": 1.5,
            }
        )
        done = await svc.wait(task.task_id, timeout_s=60)
        logs = await svc.logs(task.task_id, tail=200)
    assert done.status is TaskStatus.FAILED
    assert done.error is not None and done.error.kind.value == "timeout"
    assert any("timeout_s ended the search" in line for line in logs)  # the trials in flight were ended
    assert done.elapsed_s is not None and done.elapsed_s < 15


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"task_type": "random_forest_classification", "params": {"depth": 3}}, "no parameter 'depth'"),
        ({"task_type": "knn_classification", "params": {"n_neighbors": 0}}, "outside what it takes"),
        (
            {"task_type": "knn_classification", "search_space": {"n_neighbors": {"low": 5, "high": 500}}},
            "not inside",
        ),
        ({"task_type": "knn_classification", "search_space": {"weights": ["heaviest"]}}, "not inside"),
        ({"task_type": "random_forest_classification", "kernel": "rbf"}, "svm task types only"),
        ({"task_type": "auto_classification", "families": ["ridge"]}, "not a classification family"),
        ({"task_type": "auto_classification", "params": {"C": 1.0}}, "takes families, not params"),
        ({"task_type": "svm_classification", "timeout_s": 0}, "timeout_s"),
        ({"task_type": "svm_classification", "params": {"epsilon": 0.1}}, "no parameter 'epsilon'"),
    ],
)
async def test_bad_hyperparameters_are_refused_before_a_task_exists(
    queue_dir: Path, models_dir: Path, blobs_csv: Path, spec: dict[str, Any], expected: str
) -> None:
    async with TrainingService(queue_dir, models_dir, execute=False) as svc:
        with pytest.raises(InvalidInputError, match=expected) as refused:
            await svc.submit({"data_source": str(blobs_csv), "target_column": "label", **spec})
        assert (await svc.list_tasks()).total == 0
    assert not refused.value.message.endswith("..")  # one sentence, one full stop


async def test_an_agent_can_read_the_search_spaces(queue_dir: Path, models_dir: Path) -> None:
    server = build_server(ServerConfig(queue_dir=queue_dir, models_dir=models_dir, execute=False))
    async with Client(server, mode="legacy") as client:
        result = await client.call_tool("get_search_spaces", {})
    assert not result.is_error and result.structured_content is not None
    families = result.structured_content["families"]
    assert set(families) == set(FAMILIES)
    assert (
        families["random_forest"]["params"]["max_depth"]["range"] == "whole numbers from 2 to 32, log scale"
    )
    assert result.structured_content["task_types"]["auto_regression"] == {
        "family": "auto",
        "kind": "regression",
    }


async def test_a_trial_past_its_time_limit_is_ended_and_counts_as_failed(
    queue_dir: Path, models_dir: Path, blobs_csv: Path, slow_csv: Path
) -> None:
    common = {"target_column": "label", "cv_folds": 5, "n_parallel_trials": 1}
    async with TrainingService(queue_dir, models_dir) as svc:
        fast = await svc.submit(
            {
                "task_type": "svm_classification",
                "data_source": str(blobs_csv),
                "n_trials": 3,
                "trial_timeout_s": 30,
            }
            | common
        )
        slow = await svc.submit(
            {
                "task_type": "svm_classification",
                "data_source": str(slow_csv),
                "n_trials": 3,
                "kernel": "poly",
                "C": 1000.0,
                "trial_timeout_s": 0.2,
            }
            | common
        )
        await svc.drain(timeout_s=120)
        fast_view, slow_view = await svc.status(fast.task_id), await svc.status(slow.task_id)
        slow_logs = await svc.logs(slow.task_id, tail=200)
    assert fast_view.status is TaskStatus.COMPLETED and fast_view.trial == 3
    assert slow_view.status is TaskStatus.FAILED
    assert slow_view.error is not None and "trial_timeout_s" in (slow_view.error.hint or "")
    assert (
        sum("ran past the per-trial limit of 0.2 s; it counts as failed" in line for line in slow_logs) == 3
    )
    assert any("3 trial(s) ended early" in w and "per-trial limit" in w for w in slow_view.warnings)
    assert slow_view.elapsed_s is not None and slow_view.elapsed_s < 10
