"""A tabular search through the queue: time limits at full parallelism, the automatic per-trial limit,
an estimate that grows with a trial that runs on, and a search space that avoids slow corners."""

from __future__ import annotations

from pathlib import Path

import optuna
import pandas as pd
import pytest

from mcp_trainer import TaskStatus, TrainingService
from mcp_trainer.artifacts.model_dir import model_dir
from mcp_trainer.specs.tabular import TabularSpec
from mcp_trainer.trainers.tabular.data import load_tabular
from mcp_trainer.trainers.tabular.runner import Snapshot
from mcp_trainer.trainers.tabular.search import _eta, trial_limit
from mcp_trainer.trainers.tabular.suggest import suggest

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("limit", [{"timeout_s": 120}, {"trial_timeout_s": 60}])
async def test_a_time_limit_keeps_a_parallel_search_in_all_its_processes_without_warnings(
    queue_dir: Path, models_dir: Path, blobs_csv: Path, limit: dict[str, float]
) -> None:
    # A daemonic helper could not fork the killable child a time limit used: every helper died on its
    # first trial and the search finished in one process, silently.
    spec = {
        "task_type": "svm_classification",
        "data_source": str(blobs_csv),
        "target_column": "label",
        "n_trials": 10,
        "cv_folds": 3,
        "n_parallel_trials": 2,
        **limit,
    }
    async with TrainingService(queue_dir, models_dir) as svc:
        done = await svc.wait((await svc.submit(spec)).task_id, timeout_s=120)
    assert done.status is TaskStatus.COMPLETED, done.error
    assert done.warnings == []
    assert done.model_id is not None
    trials = pd.read_csv(model_dir(models_dir, done.model_id) / "reports" / "trials.csv")
    assert len(trials) == 10 and (trials["state"] == "COMPLETE").all()
    assert trials["user_attrs_process"].nunique() == 2  # both processes ran trials


def test_the_automatic_trial_limit_follows_the_data_size_then_the_trials_seen(blobs_csv: Path) -> None:
    spec = TabularSpec(task_type="svm_classification", data_source=str(blobs_csv), target_column="label")
    limit = trial_limit(spec, load_tabular(spec))
    assert 60 <= limit([]) < 61  # 120 rows: the first trials get a minute
    assert limit([0.1, 0.2]) == limit([])  # fewer than 3 trials seen
    assert limit([0.1, 0.2, 0.3]) == 30  # 10 x the median, at least 30 s
    assert limit([10.0, 20.0, 30.0, 40.0]) == 250
    fixed = trial_limit(spec.model_copy(update={"trial_timeout_s": 5.0}), load_tabular(spec))
    assert fixed([]) == fixed([1.0, 1.0, 1.0]) == 5.0


def test_the_estimate_grows_while_a_trial_runs_past_the_usual_duration() -> None:
    def eta(running: list[float]) -> float | None:
        return _eta(Snapshot(finished=5, completed=[1.0] * 5, running=running, best=None, limit_s=60), 10, 1)

    assert eta([0.5]) == 4 * 1.0 + 0.5  # four trials to start, half a trial left
    estimates = [eta([ran]) for ran in (2.0, 10.0, 40.0)]
    assert estimates == sorted(estimates) and estimates[0] is not None and estimates[-1] is not None
    assert estimates[-1] > estimates[0] + 5
    assert eta([59.0]) == 4 + 1.0  # never past the limit the trial runs under
    assert _eta(Snapshot(0, [], [3.0], None, 60), 10, 1) is None  # nothing to go by yet


def test_a_search_keeps_a_poly_kernel_to_small_gamma_and_c_unless_the_caller_asks() -> None:
    spec = TabularSpec(task_type="svm_classification", data_source="sklearn:iris", kernel="poly")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(200):
        _, params = suggest(study.ask(), spec)
        assert params["gamma"] <= 1.0 and params["C"] <= 100.0
    wide = spec.model_copy(update={"search_space": {"gamma": {"low": 5.0, "high": 10.0}}})
    assert suggest(optuna.create_study().ask(), wide)[1]["gamma"] >= 5.0


async def test_when_every_trial_fails_the_error_names_the_first_trials_cause_and_the_log_ends_with_it(
    queue_dir: Path, models_dir: Path, tmp_path: Path
) -> None:
    # Header-only validation lets a continuous target through to the trials, which all fail.
    rows = "\n".join(f"{i},{0.37 * i + 1.05:.3f}" for i in range(60))
    path = tmp_path / "prices.csv"
    path.write_text("size,price\n" + rows + "\n")
    spec = {
        "task_type": "logistic_regression",
        "data_source": str(path),
        "target_column": "price",
        "validate_data": False,
        "n_trials": 4,
        "cv_folds": 3,
    }
    async with TrainingService(queue_dir, models_dir) as svc:
        done = await svc.wait((await svc.submit(spec)).task_id, timeout_s=120)
        logs = await svc.logs(done.task_id, tail=10)
    assert done.status is TaskStatus.FAILED and done.error is not None
    assert done.error.kind.value == "data_error"
    assert "The first trial's error: ValueError: Unknown label type: continuous" in done.error.message
    assert any("Unknown label type: continuous" in line for line in logs)


def test_trials_completed_counts_only_the_trials_that_produced_a_score() -> None:
    from mcp_trainer.trainers.tabular.runner import RunOutcome
    from mcp_trainer.trainers.tabular.search import _outcome

    spec = TabularSpec(task_type="ridge_regression", data_source="sklearn:diabetes", n_trials=5)
    study = optuna.create_study(direction="maximize")
    for value in (0.5, 0.7, None, 0.6, None):
        trial = study.ask()
        trial.suggest_float("alpha", 1e-4, 1e3, log=True)
        study.tell(trial, value, state=None if value is not None else optuna.trial.TrialState.FAIL)
    found = _outcome(study, spec, RunOutcome())
    assert (found.n_trials, found.n_failed) == (3, 2)
    assert found.cv_score == 0.7
