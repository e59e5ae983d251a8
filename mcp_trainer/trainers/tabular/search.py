"""The Optuna search of a tabular task: trials scored by cross-validation, run in helper processes
(runner.py) under a per-trial time limit, resumable from the study on disk.

The per-trial limit is `trial_timeout_s` when given. Otherwise it is automatic: until 3 trials have
finished, 60 s plus 1 s for every 200,000 cells cross-validated (rows x features x folds), at most an
hour; then 10 times the median duration of the finished trials, at least 30 s. A trial past it is ended
and counts as failed, and the task's status says so.
"""

from __future__ import annotations

import logging
import math
import os
import statistics
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score

from mcp_trainer.machine import available_cpus
from mcp_trainer.records import ErrorKind
from mcp_trainer.specs.tabular import TabularSpec
from mcp_trainer.trainers.base import TaskFailure, WorkerContext
from mcp_trainer.trainers.study import attach_study, open_study
from mcp_trainer.trainers.tabular.cv import PreparedFolds, prepare_folds
from mcp_trainer.trainers.tabular.data import TabularData, build_preprocessor
from mcp_trainer.trainers.tabular.runner import RunOutcome, SearchRunner, Snapshot
from mcp_trainer.trainers.tabular.suggest import estimator_for, model_for, suggest

__all__ = ["SEARCH_END", "SEARCH_START", "SearchOutcome", "run_search", "trial_limit"]

log = logging.getLogger(__name__)

# The search's share of the task's progress: loading 0-5 %, search 5-90 %, the rest after it.
SEARCH_START, SEARCH_END = 5.0, 90.0
FIRST_LIMIT_S, CELLS_PER_S, MAX_FIRST_LIMIT_S = 60.0, 200_000, 3600.0
LIMIT_TIMES_MEDIAN, MIN_LIMIT_S, TRIALS_FOR_MEDIAN = 10.0, 30.0, 3
_FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL)


@dataclass(frozen=True)
class SearchOutcome:
    family: str
    params: dict[str, Any]
    cv_score: float
    n_trials: int  # trials that produced a score
    n_failed: int  # trials that failed (an error, a limit, an end of the search)
    trials_csv: str
    study: optuna.Study
    finished_early: bool = False  # stop_training_task ended it


def trial_limit(spec: TabularSpec, data: TabularData) -> Callable[[list[float]], float]:
    """The per-trial limit, in seconds, given the durations of the trials finished so far."""
    if spec.trial_timeout_s is not None:
        fixed = spec.trial_timeout_s
        return lambda durations: fixed
    cells = len(data.X) * max(1, len(data.X.columns)) * spec.cv_folds
    first = float(min(MAX_FIRST_LIMIT_S, FIRST_LIMIT_S + cells / CELLS_PER_S))

    def limit(durations: list[float]) -> float:
        if len(durations) < TRIALS_FOR_MEDIAN:
            return first
        return max(MIN_LIMIT_S, LIMIT_TIMES_MEDIAN * float(statistics.median(durations)))

    return limit


@dataclass
class _Search:
    ctx: WorkerContext
    spec: TabularSpec
    data: TabularData
    X: pd.DataFrame
    y: Any
    cv: KFold | StratifiedKFold
    scoring: str
    folds: PreparedFolds | None
    workers: int = 1
    seen_limit: set[float] = field(default_factory=set)

    def objective(self, trial: optuna.Trial) -> float:
        """One trial, in a helper process: its cross-validated score, NaN when it failed (the first
        error is kept on the trial, so a search where every trial failed can say why)."""
        family, params = suggest(trial, self.spec)
        trial.set_user_attr("process", os.getpid())
        errors: list[str] = []
        scores = self.cross_validate(family, params, errors)
        if errors:
            trial.set_user_attr("error", errors[0][:500])
        return float(np.mean(scores))  # NaN marks the trial failed; the search goes on

    def cross_validate(self, family: str, params: dict[str, Any], errors: list[str]) -> Any:
        if self.folds is not None:
            return self.folds.score(lambda: model_for(self.spec, self.data, family, params), errors)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            try:
                return cross_val_score(
                    estimator_for(self.spec, self.data, family, params),
                    self.X,
                    self.y,
                    cv=self.cv,
                    scoring=self.scoring,
                    error_score="raise",
                )
            except Exception as exc:
                log.warning("trial failed: %s: %s", type(exc).__name__, exc)
                errors.append(f"{type(exc).__name__}: {exc}")
                return np.array([np.nan])

    def on_tick(self, snap: Snapshot) -> None:
        spec = self.spec
        done = min(snap.finished, spec.n_trials)
        best = snap.best
        self.ctx.report(
            phase="searching",
            trial=snap.finished,
            n_trials=spec.n_trials,
            best_score=None if best is None else round(best.value or 0.0, 6),
            best_params=None if best is None else best.params,
            percent=SEARCH_START + (SEARCH_END - SEARCH_START) * done / spec.n_trials,
            eta_s=_eta(snap, spec.n_trials, self.workers),
        )


def _eta(snap: Snapshot, n_trials: int, workers: int) -> float | None:
    """Seconds left: the trials not started at the mean duration, shared by the processes, plus what the
    running ones still need. A trial past the mean is assumed to need a quarter more of what it has run
    (so the estimate grows while it runs on), and never more than its limit allows."""
    if not snap.completed:
        return None
    mean = sum(snap.completed) / len(snap.completed)
    waiting = max(n_trials - snap.finished - len(snap.running), 0)
    running = [min(max(mean - ran, 0.25 * ran), max(snap.limit_s - ran, 0.0)) for ran in snap.running]
    return round(waiting * mean / max(workers, 1) + max(running, default=0.0), 2)


def run_search(
    ctx: WorkerContext,
    spec: TabularSpec,
    data: TabularData,
    X: pd.DataFrame,
    y: Any,
    cv: KFold | StratifiedKFold,
    scoring: str,
) -> SearchOutcome:
    """Search `spec`'s space on the training rows; resumes the study a killed attempt left on disk.

    Raises TaskFailure: timeout when no trial finished within timeout_s, data_error when every trial
    failed (naming the first trial's error)."""
    study = open_study(
        ctx.work_dir, study_name=ctx.record.task_id, direction="maximize", seed=spec.random_state
    )
    # Preprocessed once for every trial (and every forked helper): see cv.py.
    folds = prepare_folds(build_preprocessor(data, scale=spec.scale_features), X, y, cv, scoring)
    search = _Search(ctx, spec, data, X, y, cv, scoring, folds)
    done = len(study.get_trials(deepcopy=False, states=_FINISHED))
    if done:
        log.info("resuming the search: %d of %d trials already finished", done, spec.n_trials)
    ctx.report(phase="searching", trial=done, n_trials=spec.n_trials, percent=SEARCH_START, force=True)
    remaining = spec.n_trials - len(study.get_trials(deepcopy=False))
    search.workers = max(1, min(spec.n_parallel_trials or default_parallel_trials(ctx), remaining))
    outcome = RunOutcome(finished_early=ctx.should_finish())
    if remaining > 0 and not ctx.should_finish():
        log.info("running the search in %d process(es)", search.workers)
        outcome = SearchRunner(
            study,
            search.objective,
            reopen=lambda i: attach_study(
                ctx.work_dir, study_name=ctx.record.task_id, seed=spec.random_state + i
            ),
            n_trials=spec.n_trials,
            workers=search.workers,
            timeout_s=spec.timeout_s,
            trial_limit_s=trial_limit(spec, data),
            on_tick=search.on_tick,
            should_stop=ctx.should_stop,
            should_finish=ctx.should_finish,
        ).run()
    _warn(ctx, spec, outcome)
    ctx.report(percent=SEARCH_END, force=True)
    return _outcome(study, spec, outcome)


def default_parallel_trials(ctx: WorkerContext) -> int:
    """The CPUs this task may fill by default: its share of the machine among the tasks that may run at
    once (at least 1), so that concurrent searches do not oversubscribe the cores."""
    return max(1, min(available_cpus(), ctx.cpu_share or available_cpus()))


def _warn(ctx: WorkerContext, spec: TabularSpec, outcome: RunOutcome) -> None:
    """Helpers that died, and trials ended by a limit, said once each kind in the task's status."""
    for message in outcome.warnings:
        ctx.warn(message)
    for why, count in Counter(e.why for e in outcome.ended).items():
        example = next(e for e in outcome.ended if e.why == why)
        hint = ""
        if "per-trial limit" in why:
            hint = "; set trial_timeout_s to change the limit" if spec.trial_timeout_s is None else ""
        ctx.warn(f"{count} trial(s) ended early and counted as failed, e.g. {example}{hint}")


def _outcome(study: optuna.Study, spec: TabularSpec, run: RunOutcome) -> SearchOutcome:
    best = _best_or_none(study)
    failed = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,))
    if best is None and run.timed_out:
        assert spec.timeout_s is not None
        raise TaskFailure(
            ErrorKind.TIMEOUT,
            f"No trial finished within timeout_s={spec.timeout_s:g}.",
            "Raise timeout_s, or use fewer rows or a cheaper model family.",
        )
    if best is None:
        first = next((t.user_attrs["error"] for t in failed if "error" in t.user_attrs), None)
        why = f" The first trial's error: {first}." if first else ""
        raise TaskFailure(
            ErrorKind.DATA_ERROR,
            f"None of the {len(study.trials)} trials produced a score: every model failed on this data.{why}",
            "The task log has each trial's error; fix the fixed parameters or the data"
            + (", or raise trial_timeout_s." if spec.trial_timeout_s else "."),
        )
    if run.timed_out:
        log.info("timeout_s=%g reached: keeping the best of %d trials", spec.timeout_s, len(study.trials))
    family, params = suggest(optuna.trial.FixedTrial(best.params), spec)
    trials = study.trials_dataframe(attrs=("number", "value", "state", "params", "duration", "user_attrs"))
    complete = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
    return SearchOutcome(
        family,
        params,
        round(float(best.value or 0.0), 6),
        complete,
        len(failed),
        trials.to_csv(index=False),
        study,
        finished_early=run.finished_early,
    )


def _best_or_none(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    return max(complete, key=lambda t: t.value if t.value is not None else -math.inf) if complete else None
