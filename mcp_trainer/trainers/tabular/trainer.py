"""scikit-learn models of every family (specs/spaces.py), tuned by an Optuna search scored by
cross-validation: load and split the data, search, fit the best on the training rows, evaluate on the
held-out rows, save the model directory, and draw the report plots once the task is completed."""

from __future__ import annotations

import logging
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import optuna
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split
from sklearn.pipeline import Pipeline

from mcp_trainer.artifacts.model_dir import save_model_dir
from mcp_trainer.artifacts.plots_state import drawing_entry, publish_plots
from mcp_trainer.machine import available_cpus
from mcp_trainer.records import ErrorKind, TaskResult
from mcp_trainer.specs.tabular import TabularSpec
from mcp_trainer.trainers.base import TaskFailure, Trainer, WorkerContext
from mcp_trainer.trainers.tabular.data import TabularData, load_tabular
from mcp_trainer.trainers.tabular.importance import (
    PERMUTATION_PENDING,
    model_importances,
    permutation_importances,
)
from mcp_trainer.trainers.tabular.report import HeldOut, ReportPlan, class_scores, draw_reports, plan_reports
from mcp_trainer.trainers.tabular.search import SEARCH_END, run_search
from mcp_trainer.trainers.tabular.suggest import estimator_for, fixed_params
from mcp_trainer.trainers.tabular.summary import held_out_metrics, metadata_for, summary_markdown
from mcp_trainer.trainers.threads import limit_threads

__all__ = ["SklearnTrainer"]

log = logging.getLogger(__name__)


@dataclass
class _Split:
    """The task's data, split into training rows (searched on) and held-out rows (evaluated on)."""

    data: TabularData
    X_train: pd.DataFrame
    X_test: pd.DataFrame
    y_train: Any
    y_test: Any
    cv: KFold | StratifiedKFold


@dataclass
class _Run:
    """What the steps of one task produce, for its metadata."""

    family: str
    best_params: dict[str, Any]
    cv_score: float | None = None
    n_trials: int | None = None  # trials that produced a score
    n_failed: int | None = None
    finished_early: bool = False
    study: optuna.Study | None = None
    reports: dict[str, str | bytes] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    importances: dict[str, Any] = field(default_factory=dict)


class SklearnTrainer(Trainer):
    def run(self, ctx: WorkerContext) -> TaskResult:
        spec = ctx.record.spec
        assert isinstance(spec, TabularSpec)
        started = time.perf_counter()
        ctx.report(phase="loading_data", percent=1.0, force=True)
        split = _load_and_split(spec)
        timings = {"load": time.perf_counter() - started}
        ctx.check_stop()

        t0 = time.perf_counter()
        run = _search_or_fixed(ctx, spec, split)
        timings["search"] = time.perf_counter() - t0
        ctx.check_stop()

        ctx.report(phase="training", percent=SEARCH_END, eta_s=None, force=True)
        t0 = time.perf_counter()
        final = estimator_for(spec, split.data, run.family, run.best_params)
        with warnings.catch_warnings(), limit_threads(ctx.cpu_share or available_cpus()):
            warnings.simplefilter("ignore", ConvergenceWarning)
            final.fit(split.X_train, split.y_train)
        timings["final_fit"] = time.perf_counter() - t0
        ctx.check_stop()

        held_out, importances, plan = _evaluate(ctx, spec, split, final, run.study)
        run.importances = importances
        ctx.check_stop()
        ctx.report(phase="saving", percent=97.0, force=True)
        run.timings = {**timings, "total": time.perf_counter() - started}
        path, meta = _save(ctx, spec, split, final, run, held_out, plan)
        # The task completes now; the permutation importances and the plots come after the result is sent
        # (artifacts/plots_state.py).
        ctx.later(lambda: _draw_and_publish(ctx, spec, split, final, plan, meta))
        ctx.report(phase="done", percent=100.0, eta_s=0.0, force=True)
        auto = spec.family == "auto"
        return TaskResult(
            model_id=ctx.model_id,
            model_dir=str(path),
            metrics=held_out,
            cv_score=run.cv_score,
            best_params={"family": run.family, **run.best_params} if auto else run.best_params,
            n_trials_completed=run.n_trials,
        )


def _load_and_split(spec: TabularSpec) -> _Split:
    data = load_tabular(spec)
    if spec.effective_scoring == "roc_auc" and data.classes is not None and len(data.classes) > 2:
        raise TaskFailure(
            ErrorKind.DATA_ERROR,
            f"scoring='roc_auc' needs two classes; the target has {len(data.classes)}.",
            "Use accuracy, balanced_accuracy or f1_macro.",
        )
    stratify = None
    if spec.is_classification:
        counts = pd.Series(data.y).value_counts()
        stratify = data.y if counts.min() >= 2 else None
    X_train, X_test, y_train, y_test = train_test_split(
        data.X, data.y, test_size=spec.test_size, random_state=spec.random_state, stratify=stratify
    )
    cv = (
        StratifiedKFold(spec.cv_folds, shuffle=True, random_state=spec.random_state)
        if spec.is_classification and stratify is not None
        else KFold(spec.cv_folds, shuffle=True, random_state=spec.random_state)
    )
    return _Split(data, X_train, X_test, y_train, y_test, cv)


def _search_or_fixed(ctx: WorkerContext, spec: TabularSpec, split: _Split) -> _Run:
    if not spec.optimize_hyperparameters:
        return _Run(spec.family, fixed_params(spec))
    found = run_search(ctx, spec, split.data, split.X_train, split.y_train, split.cv, spec.effective_scoring)
    return _Run(
        found.family,
        found.params,
        cv_score=found.cv_score,
        n_trials=found.n_trials,
        n_failed=found.n_failed,
        finished_early=found.finished_early,
        study=found.study,
        reports={"trials.csv": found.trials_csv},
    )


def _evaluate(
    ctx: WorkerContext, spec: TabularSpec, split: _Split, final: Pipeline, study: optuna.Study | None
) -> tuple[dict[str, float], dict[str, Any], ReportPlan]:
    """Held-out metrics of the final model, its own feature importances, and the report plots that apply.
    Permutation importances come later (`_draw_and_publish`): the plan's importance plot reads them from
    the `permutation` dict it is given, filled in then."""
    ctx.report(phase="evaluating", percent=95.0, force=True)
    pred = final.predict(split.X_test)
    scores, score_source = class_scores(final, split.X_test) if spec.is_classification else (None, None)
    held_out = held_out_metrics(spec, split.y_test, pred, scores)
    importances = {
        "permutation": dict(PERMUTATION_PENDING),
        "model": model_importances(final, list(split.X_test.columns)),
    }
    plan = plan_reports(
        held_out=HeldOut(
            y_true=split.y_test,
            y_pred=pred,
            targets=split.data.targets,
            classes=list(final.classes_) if spec.is_classification else None,
            scores=scores,
            score_source=score_source,
        ),
        classification=spec.is_classification,
        study=study,
        scoring=spec.effective_scoring,
        auto=spec.family == "auto",
        seed=spec.random_state,
        importance=importances["permutation"],
    )
    return held_out, importances, plan


def _save(
    ctx: WorkerContext,
    spec: TabularSpec,
    split: _Split,
    final: Pipeline,
    run: _Run,
    held_out: dict[str, float],
    plan: ReportPlan,
) -> tuple[Path, dict[str, Any]]:
    """Save the model directory with its plots marked as being drawn; returns it and its metadata."""
    metadata = metadata_for(ctx, spec, split.data, run.best_params, run.cv_score, held_out, run.n_trials)
    metadata["family"] = run.family
    metadata["n_trials_failed"] = run.n_failed
    metadata["stopped_early"] = "stop_training_task" if run.finished_early else None
    metadata["warnings"] = list(ctx.progress.warnings)
    metadata["feature_importances"] = run.importances
    metadata["timings_s"] = {k: round(v, 3) for k, v in run.timings.items()}
    metadata["plots"] = drawing_entry(plan.names, plan.skipped)
    metadata["rows"] = {
        "train": len(split.X_train),
        "test": len(split.X_test),
        "dropped_missing_target": split.data.rows_dropped,
    }
    head = summary_markdown(ctx.model_id, spec, metadata)
    drawing = ["## Report plots", "", f"- being drawn: {', '.join(plan.names) or 'none'}"]
    reports = {**run.reports, "summary.md": head + "\n".join(["", *drawing, ""])}
    path = save_model_dir(
        ctx.models_dir, ctx.model_id, lambda p: joblib.dump(final, p), metadata, reports, ctx.signer
    )
    return path, metadata


def _draw_and_publish(
    ctx: WorkerContext,
    spec: TabularSpec,
    split: _Split,
    final: Pipeline,
    plan: ReportPlan,
    meta: dict[str, Any],
) -> None:
    """Compute the permutation importances of a saved model, draw its report plots and publish both into
    its directory (after the result). Never raises: a failure is logged, and the plots left pending are
    then reported missing."""
    try:
        _hold_for_tests()
        with limit_threads(ctx.cpu_share or available_cpus()):
            found = permutation_importances(
                final, split.X_test, split.y_test, spec.effective_scoring, spec.random_state
            )
        permutation = meta["feature_importances"]["permutation"]  # the very dict the plan's plot reads
        permutation.clear()
        permutation.update(found)
        drawn = draw_reports(plan, ctx.cpu_share)
        summary = summary_markdown(ctx.model_id, spec, meta) + "\n".join(["", *drawn.summary_lines(), ""])
        updates = {"feature_importances": meta["feature_importances"]}
        if not publish_plots(ctx.models_dir, ctx.model_id, drawn.images, drawn.metadata(), summary, updates):
            log.info("model %s was removed before its plots were drawn", ctx.model_id)
    except Exception:
        log.exception("the report plots of %s could not be published", ctx.model_id)


def _hold_for_tests() -> None:
    """Tests set MCP_TRAINER_HOLD_PLOTS to a file path: the plots wait until that file exists (at most
    5 minutes), so that a test can look at a completed task whose plots are not drawn yet."""
    gate = os.environ.get("MCP_TRAINER_HOLD_PLOTS")
    deadline = time.monotonic() + 300.0
    while gate and not Path(gate).exists() and time.monotonic() < deadline:
        time.sleep(0.02)
