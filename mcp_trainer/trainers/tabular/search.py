"""The Optuna search of a tabular task: trials scored by cross-validation, in one process or several,
resumable from the study on disk, with per-trial and whole-search time limits."""

from __future__ import annotations

import logging
import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score

from mcp_trainer.records import ErrorKind
from mcp_trainer.specs.tabular import TabularSpec
from mcp_trainer.trainers.base import TaskFailure, WorkerContext
from mcp_trainer.trainers.study import attach_study, open_study
from mcp_trainer.trainers.tabular.cv import PreparedFolds, prepare_folds
from mcp_trainer.trainers.tabular.data import TabularData, build_preprocessor
from mcp_trainer.trainers.tabular.isolate import TrialTimeout, call_with_limit
from mcp_trainer.trainers.tabular.parallel import available_cpus, run_parallel
from mcp_trainer.trainers.tabular.suggest import estimator_for, model_for, suggest

__all__ = ["SEARCH_END", "SEARCH_START", "SearchOutcome", "run_search"]

log = logging.getLogger(__name__)

# The search's share of the task's progress: loading 0-5 %, search 5-90 %, the rest after it.
SEARCH_START, SEARCH_END = 5.0, 90.0
_FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL)


@dataclass(frozen=True)
class SearchOutcome:
    family: str
    params: dict[str, Any]
    cv_score: float
    n_trials: int
    trials_csv: str
    study: optuna.Study


@dataclass
class _Search:
    ctx: WorkerContext
    spec: TabularSpec
    data: TabularData
    X: pd.DataFrame
    y: Any
    cv: KFold | StratifiedKFold
    scoring: str
    study: optuna.Study
    folds: PreparedFolds | None
    deadline: float | None  # one for the whole search, shared by forked helpers (CLOCK_MONOTONIC)
    workers: int = 1
    durations: list[float] = field(default_factory=list)

    def finished(self) -> int:
        return len(self.study.get_trials(deepcopy=False, states=_FINISHED))

    def objective(self, trial: optuna.Trial) -> float:
        self.ctx.check_stop()
        family, params = suggest(trial, self.spec)
        t0 = time.perf_counter()
        limit = _trial_limit(self.spec.trial_timeout_s, self.deadline)
        if limit is None:
            scores = self.cross_validate(family, params)
        else:
            try:
                # With a limit the trial runs in a forked child that is killed when the limit passes: a
                # Python-level timeout cannot interrupt a long fit.
                scores = call_with_limit(
                    lambda: self.cross_validate(family, params), limit, self.ctx.check_stop
                )
            except TrialTimeout as exc:
                log.warning("trial %d %s", trial.number, exc)
                return float("nan")  # the trial fails; the search goes on (or stops at timeout_s)
        self.durations.append(time.perf_counter() - t0)
        return float(np.mean(scores))  # NaN marks the trial failed; the search goes on

    def cross_validate(self, family: str, params: dict[str, Any]) -> Any:
        if self.folds is not None:
            return self.folds.score(lambda: model_for(self.spec, self.data, family, params))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return cross_val_score(
                estimator_for(self.spec, self.data, family, params),
                self.X,
                self.y,
                cv=self.cv,
                scoring=self.scoring,
                error_score=np.nan,
            )

    def after_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        spec, finished = self.spec, self.finished()
        mean = sum(self.durations) / len(self.durations) if self.durations else 0.0
        remaining = max(spec.n_trials - finished, 0)
        self.report(
            finished,
            percent=SEARCH_START + (SEARCH_END - SEARCH_START) * min(finished, spec.n_trials) / spec.n_trials,
            eta_s=round(mean * remaining / max(self.workers, 1) + mean / spec.cv_folds, 2),
        )
        self.ctx.check_stop()

    def report(self, finished: int, *, force: bool = False, **fields: Any) -> None:
        best = _best_or_none(self.study)
        self.ctx.report(
            phase="searching",
            trial=finished,
            n_trials=self.spec.n_trials,
            best_score=None if best is None else round(best.value or 0.0, 6),
            best_params=None if best is None else best.params,
            force=force,
            **fields,
        )

    def optimize(self) -> None:
        spec, remaining = self.spec, self.spec.n_trials - self.finished()
        self.workers = min(spec.n_parallel_trials or available_cpus(), remaining)
        if self.workers > 1:
            log.info("running the search in %d processes", self.workers)
            run_parallel(
                self.study,
                self.objective,
                n_trials=spec.n_trials,
                workers=self.workers,
                timeout_s=spec.timeout_s,
                reopen=lambda i: attach_study(
                    self.ctx.work_dir, study_name=self.ctx.record.task_id, seed=spec.random_state + i
                ),
                callbacks=[self.after_trial],
            )
        elif remaining > 0:
            self.study.optimize(
                self.objective, n_trials=remaining, timeout=spec.timeout_s, callbacks=[self.after_trial]
            )


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
    failed."""
    study = open_study(
        ctx.work_dir, study_name=ctx.record.task_id, direction="maximize", seed=spec.random_state
    )
    search = _Search(
        ctx,
        spec,
        data,
        X,
        y,
        cv,
        scoring,
        study,
        # Preprocessed once for every trial (and every forked helper): see cv.py.
        folds=prepare_folds(build_preprocessor(data, scale=spec.scale_features), X, y, cv, scoring),
        deadline=None if spec.timeout_s is None else time.monotonic() + spec.timeout_s,
    )
    done = search.finished()
    if done:
        log.info("resuming the search: %d of %d trials already finished", done, spec.n_trials)
    ctx.report(phase="searching", trial=done, n_trials=spec.n_trials, percent=SEARCH_START, force=True)
    started = time.monotonic()
    search.optimize()
    # The helpers' last trials end after the main process's last progress report.
    search.report(search.finished(), percent=SEARCH_END, force=True)
    timed_out = spec.timeout_s is not None and time.monotonic() - started >= spec.timeout_s
    return _outcome(study, spec, timed_out)


def _outcome(study: optuna.Study, spec: TabularSpec, timed_out: bool) -> SearchOutcome:
    best = _best_or_none(study)
    if best is None and timed_out:
        assert spec.timeout_s is not None
        raise TaskFailure(
            ErrorKind.TIMEOUT,
            f"No trial finished within timeout_s={spec.timeout_s:g}.",
            "Raise timeout_s, or use fewer rows or a cheaper model family.",
        )
    if best is None:
        raise TaskFailure(
            ErrorKind.DATA_ERROR,
            f"None of the {spec.n_trials} trials produced a score: every model failed on this data.",
            "The task log has each trial's error; fix the fixed parameters or the data"
            + (", or raise trial_timeout_s." if spec.trial_timeout_s else "."),
        )
    if timed_out:
        log.info("timeout_s=%g reached: keeping the best of %d trials", spec.timeout_s, len(study.trials))
    family, params = suggest(optuna.trial.FixedTrial(best.params), spec)
    trials = study.trials_dataframe(attrs=("number", "value", "state", "params", "duration"))
    return SearchOutcome(
        family,
        params,
        round(float(best.value or 0.0), 6),
        len(study.trials),
        trials.to_csv(index=False),
        study,
    )


def _trial_limit(trial_timeout_s: float | None, deadline: float | None) -> float | None:
    """Seconds the next trial may run: its own limit, cut to what is left of the search's timeout_s."""
    limits = [] if trial_timeout_s is None else [trial_timeout_s]
    if deadline is not None:
        limits.append(max(deadline - time.monotonic(), 0.01))
    return min(limits) if limits else None


def _best_or_none(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    return max(complete, key=lambda t: t.value if t.value is not None else -math.inf) if complete else None
