"""scikit-learn models of every family (spaces.py), tuned by an Optuna search scored by cross-validation."""

from __future__ import annotations

import logging
import math
import platform
import time
import warnings
from typing import Any

import joblib
import numpy as np
import optuna
import pandas as pd
import sklearn
from sklearn import metrics as skm
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score, train_test_split
from sklearn.pipeline import Pipeline

from mcp_trainer.artifacts import save_model_dir
from mcp_trainer.models import TaskResult
from mcp_trainer.spaces import FAMILIES, Choice, Kind, families_for, narrow
from mcp_trainer.specs import TabularSpec
from mcp_trainer.trainers.base import DataError, SearchTimeout, Trainer, WorkerContext
from mcp_trainer.trainers.cv import prepare_folds
from mcp_trainer.trainers.families import build_model
from mcp_trainer.trainers.isolate import TrialTimeout, call_with_limit
from mcp_trainer.trainers.parallel import available_cpus, run_parallel
from mcp_trainer.trainers.reports import HeldOut, class_scores, render_reports
from mcp_trainer.trainers.study import attach_study, open_study
from mcp_trainer.trainers.tabular import TabularData, build_preprocessor, load_tabular

__all__ = ["SklearnTrainer"]

log = logging.getLogger(__name__)

# Progress bands: loading 0-5 %, search 5-90 %, final fit 90-95 %, evaluation and saving 95-100 %.
_SEARCH_START, _SEARCH_END = 5.0, 90.0
_SVM_FLAT = ("kernel", "C", "gamma", "degree", "epsilon")


def _fixed(spec: TabularSpec) -> dict[str, Any]:
    """Hyperparameters the caller fixed: `params`, plus the SVM families' flat fields."""
    fixed = dict(spec.params)
    if spec.family == "svm":
        fixed.update({f: getattr(spec, f) for f in _SVM_FLAT if getattr(spec, f) is not None})
    return fixed


def _suggest_family(
    trial: optuna.trial.BaseTrial,
    family: str,
    kind: Kind,
    fixed: dict[str, Any],
    overrides: dict[str, Any],
    prefix: str = "",
) -> dict[str, Any]:
    """One value per applicable parameter: the fixed one, else a suggestion from the (narrowed) space."""
    chosen: dict[str, Any] = {}
    for name, param in FAMILIES[family].params.items():
        if not param.applies({**fixed, **chosen}, kind):
            continue
        if name in fixed:
            chosen[name] = fixed[name]
            continue
        space = narrow(param.space, overrides[name]) if name in overrides else param.space
        assert space is not None  # overrides were checked at submission
        key = prefix + name
        if isinstance(space, Choice):
            chosen[name] = trial.suggest_categorical(key, list(space.choices))
        elif space.integer:
            chosen[name] = trial.suggest_int(key, int(space.low), int(space.high), log=space.log)
        else:
            chosen[name] = trial.suggest_float(key, space.low, space.high, log=space.log)
    return chosen


def _suggest(trial: optuna.trial.BaseTrial, spec: TabularSpec) -> tuple[str, dict[str, Any]]:
    """(family, parameters) for one trial; auto task types choose the family too."""
    if spec.family != "auto":
        return spec.family, _suggest_family(trial, spec.family, spec.kind, _fixed(spec), spec.search_space)
    family = str(trial.suggest_categorical("family", spec.families or families_for(spec.kind)))
    return family, _suggest_family(trial, family, spec.kind, {}, {}, prefix=f"{family}.")


def _model(spec: TabularSpec, data: TabularData, family: str, params: dict[str, Any]) -> Any:
    return build_model(family, spec.kind, params, spec.random_state, n_targets=len(data.targets))


def _estimator(spec: TabularSpec, data: TabularData, family: str, params: dict[str, Any]) -> Pipeline:
    preprocess = build_preprocessor(data, scale=spec.scale_features)
    return Pipeline([("preprocess", preprocess), ("model", _model(spec, data, family, params))])


def _held_out_metrics(spec: TabularSpec, y: Any, pred: Any, scores: Any) -> dict[str, float]:
    if spec.is_classification:
        out = {
            "accuracy": skm.accuracy_score(y, pred),
            "balanced_accuracy": skm.balanced_accuracy_score(y, pred),
            "f1_macro": skm.f1_score(y, pred, average="macro", zero_division=0),
            "precision_macro": skm.precision_score(y, pred, average="macro", zero_division=0),
            "recall_macro": skm.recall_score(y, pred, average="macro", zero_division=0),
        }
        if len(np.unique(y)) == 2 and scores is not None and np.ndim(scores) == 1:
            out["roc_auc"] = skm.roc_auc_score(y, scores)
    else:
        out = {
            "r2": skm.r2_score(y, pred),
            "mae": skm.mean_absolute_error(y, pred),
            "rmse": math.sqrt(skm.mean_squared_error(y, pred)),
        }
    return {k: round(float(v), 6) for k, v in out.items()}


class SklearnTrainer(Trainer):
    def run(self, ctx: WorkerContext) -> TaskResult:
        spec = ctx.record.spec
        assert isinstance(spec, TabularSpec)
        started = time.perf_counter()
        ctx.report(phase="loading_data", percent=1.0, force=True)
        data = load_tabular(spec)
        scoring = spec.effective_scoring
        if scoring == "roc_auc" and data.classes is not None and len(data.classes) > 2:
            raise DataError(
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
        load_s = time.perf_counter() - started
        ctx.check_stop()

        cv_score: float | None = None
        n_done: int | None = None
        study: optuna.Study | None = None
        reports: dict[str, str | bytes] = {}
        search_started = time.perf_counter()
        if spec.optimize_hyperparameters:
            family, best_params, cv_score, n_done, trials_csv, study = self._search(
                ctx, spec, data, X_train, y_train, cv, scoring
            )
            reports["trials.csv"] = trials_csv
        else:
            family, best_params = spec.family, _fixed(spec)
        search_s = time.perf_counter() - search_started

        ctx.check_stop()
        ctx.report(phase="training", percent=_SEARCH_END, eta_s=None, force=True)
        fit_started = time.perf_counter()
        final = _estimator(spec, data, family, best_params)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            final.fit(X_train, y_train)
        fit_s = time.perf_counter() - fit_started
        ctx.check_stop()
        ctx.report(phase="evaluating", percent=95.0, force=True)
        pred = final.predict(X_test)
        scores, score_source = class_scores(final, X_test) if spec.is_classification else (None, None)
        held_out = _held_out_metrics(spec, y_test, pred, scores)
        ctx.report(phase="reporting", percent=96.0, force=True)
        plots = render_reports(
            held_out=HeldOut(
                y_true=y_test,
                y_pred=pred,
                targets=data.targets,
                classes=list(final.classes_) if spec.is_classification else None,
                scores=scores,
                score_source=score_source,
            ),
            classification=spec.is_classification,
            study=study,
            scoring=scoring,
            auto=spec.family == "auto",
            seed=spec.random_state,
        )
        reports.update(plots.images)
        ctx.check_stop()
        ctx.report(phase="saving", percent=97.0, force=True)

        metadata = self._metadata(ctx, spec, data, best_params, cv_score, held_out, n_done)
        metadata["family"] = family
        metadata["timings_s"] = {
            "load": round(load_s, 3),
            "search": round(search_s, 3),
            "final_fit": round(fit_s, 3),
            "reports": round(plots.seconds, 3),
            "total": round(time.perf_counter() - started, 3),
        }
        metadata["plots"] = plots.metadata()
        metadata["rows"] = {
            "train": len(X_train),
            "test": len(X_test),
            "dropped_missing_target": data.rows_dropped,
        }
        reports["summary.md"] = _summary(ctx.model_id, spec, metadata) + "\n".join(
            ["", *plots.summary_lines(), ""]
        )
        path = save_model_dir(
            ctx.models_dir, ctx.model_id, lambda p: joblib.dump(final, p), metadata, reports
        )
        ctx.report(phase="done", percent=100.0, eta_s=0.0, force=True)
        return TaskResult(
            model_id=ctx.model_id,
            model_dir=str(path),
            metrics=held_out,
            cv_score=cv_score,
            best_params={"family": family, **best_params} if spec.family == "auto" else best_params,
            n_trials_completed=n_done,
        )

    def _search(
        self,
        ctx: WorkerContext,
        spec: TabularSpec,
        data: TabularData,
        X: pd.DataFrame,
        y: Any,
        cv: KFold | StratifiedKFold,
        scoring: str,
    ) -> tuple[str, dict[str, Any], float, int, str, optuna.Study]:
        study = open_study(
            ctx.work_dir, study_name=ctx.record.task_id, direction="maximize", seed=spec.random_state
        )
        finished_states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL)
        done = len(study.get_trials(deepcopy=False, states=finished_states))
        if done:
            log.info("resuming the search: %d of %d trials already finished", done, spec.n_trials)
        durations: list[float] = []
        # Preprocessed once for every trial (and every forked helper): see cv.py.
        folds = prepare_folds(build_preprocessor(data, scale=spec.scale_features), X, y, cv, scoring)
        # One deadline for the whole search, shared by forked helpers (CLOCK_MONOTONIC is system-wide).
        deadline = None if spec.timeout_s is None else time.monotonic() + spec.timeout_s

        def objective(trial: optuna.Trial) -> float:
            ctx.check_stop()
            family, params = _suggest(trial, spec)
            t0 = time.perf_counter()

            def cross_validate() -> Any:
                if folds is not None:
                    return folds.score(lambda: _model(spec, data, family, params))
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    return cross_val_score(
                        _estimator(spec, data, family, params),
                        X,
                        y,
                        cv=cv,
                        scoring=scoring,
                        error_score=np.nan,
                    )

            limit = _trial_limit(spec.trial_timeout_s, deadline)
            if limit is None:
                scores = cross_validate()
            else:
                try:
                    # With a limit the trial runs in a forked child that is killed when the limit passes:
                    # a Python-level timeout cannot interrupt a long fit.
                    scores = call_with_limit(cross_validate, limit, ctx.check_stop)
                except TrialTimeout as exc:
                    log.warning("trial %d %s", trial.number, exc)
                    return float("nan")  # the trial fails; the search goes on (or stops at timeout_s)
            durations.append(time.perf_counter() - t0)
            return float(np.mean(scores))  # NaN marks the trial failed; the search goes on

        def after_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            finished = len(study.get_trials(deepcopy=False, states=finished_states))
            best = _best_or_none(study)
            mean = sum(durations) / len(durations) if durations else 0.0
            remaining = max(spec.n_trials - finished, 0)
            ctx.report(
                phase="searching",
                trial=finished,
                n_trials=spec.n_trials,
                best_score=None if best is None else round(best.value or 0.0, 6),
                best_params=None if best is None else best.params,
                percent=_SEARCH_START
                + (_SEARCH_END - _SEARCH_START) * min(finished, spec.n_trials) / spec.n_trials,
                eta_s=round(mean * remaining / max(workers, 1) + mean / spec.cv_folds, 2),
            )
            ctx.check_stop()

        ctx.report(phase="searching", trial=done, n_trials=spec.n_trials, percent=_SEARCH_START, force=True)
        remaining = spec.n_trials - done
        search_started = time.monotonic()
        workers = min(spec.n_parallel_trials or available_cpus(), remaining)
        if workers > 1:
            log.info("running the search in %d processes", workers)
            run_parallel(
                study,
                objective,
                n_trials=spec.n_trials,
                workers=workers,
                timeout_s=spec.timeout_s,
                reopen=lambda i: attach_study(
                    ctx.work_dir, study_name=ctx.record.task_id, seed=spec.random_state + i
                ),
                callbacks=[after_trial],
            )
        elif remaining > 0:
            study.optimize(objective, n_trials=remaining, timeout=spec.timeout_s, callbacks=[after_trial])
        best = _best_or_none(study)
        finished = len(study.get_trials(deepcopy=False, states=finished_states))
        ctx.report(  # helpers' last trials end after the main process's last progress report
            trial=finished,
            best_score=None if best is None else round(best.value or 0.0, 6),
            best_params=None if best is None else best.params,
            percent=_SEARCH_END,
            force=True,
        )
        timed_out = spec.timeout_s is not None and time.monotonic() - search_started >= spec.timeout_s
        if best is None and timed_out:
            raise SearchTimeout(
                f"No trial finished within timeout_s={spec.timeout_s:g}.",
                "Raise timeout_s, or use fewer rows or a cheaper model family.",
            )
        if best is None:
            raise DataError(
                f"None of the {spec.n_trials} trials produced a score: every model failed on this data.",
                "The task log has each trial's error; fix the fixed parameters or the data"
                + (", or raise trial_timeout_s." if spec.trial_timeout_s else "."),
            )
        if timed_out:
            log.info("timeout_s=%g reached: keeping the best of %d trials", spec.timeout_s, len(study.trials))
        family, params = _suggest(optuna.trial.FixedTrial(best.params), spec)
        trials = study.trials_dataframe(attrs=("number", "value", "state", "params", "duration"))
        return (
            family,
            params,
            round(float(best.value or 0.0), 6),
            len(study.trials),
            trials.to_csv(index=False),
            study,
        )

    def _metadata(
        self,
        ctx: WorkerContext,
        spec: TabularSpec,
        data: TabularData,
        best_params: dict[str, Any],
        cv_score: float | None,
        held_out: dict[str, float],
        n_trials: int | None,
    ) -> dict[str, Any]:
        record = ctx.record
        return {
            "model_id": ctx.model_id,
            "task_id": record.task_id,
            "task_type": spec.task_type,
            "name": record.name,
            "user_id": record.user_id,
            "created_at": time.time(),
            "parameters": spec.model_dump(mode="json"),
            "best_params": best_params,
            "scoring": spec.effective_scoring,
            "cv_score": cv_score,
            "n_trials_completed": n_trials,
            "metrics": held_out,
            "features": {
                "names": data.numeric + data.categorical,
                "types": {
                    **dict.fromkeys(data.numeric, "numeric"),
                    **dict.fromkeys(data.categorical, "categorical"),
                },
            },
            "target": data.targets,
            "classes": None if data.classes is None else [_plain(c) for c in data.classes],
            "data": {"source": spec.data_source, "sha256": data.sha256},
            "versions": {
                "python": platform.python_version(),
                "scikit-learn": sklearn.__version__,
                "optuna": optuna.__version__,
                "pandas": pd.__version__,
                "numpy": np.__version__,
            },
        }


def _trial_limit(trial_timeout_s: float | None, deadline: float | None) -> float | None:
    """Seconds the next trial may run: its own limit, cut to what is left of the search's timeout_s."""
    limits = [] if trial_timeout_s is None else [trial_timeout_s]
    if deadline is not None:
        limits.append(max(deadline - time.monotonic(), 0.01))
    return min(limits) if limits else None


def _best_or_none(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    return max(complete, key=lambda t: t.value if t.value is not None else -math.inf) if complete else None


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _summary(model_id: str, spec: TabularSpec, meta: dict[str, Any]) -> str:
    lines = [
        f"# {model_id}",
        "",
        f"- Task: `{meta['task_id']}` ({spec.task_type}), target {', '.join(meta['target'])}",
        f"- Data: `{meta['data']['source']}` "
        f"({meta['rows']['train']} train rows, {meta['rows']['test']} held out)",
        f"- Best parameters: {meta['best_params']}",
    ]
    if meta["cv_score"] is not None:
        lines.append(
            f"- Cross-validated {meta['scoring']}: {meta['cv_score']} "
            f"over {meta['n_trials_completed']} trials"
        )
    lines += ["", "## Held-out metrics", ""]
    lines += [f"- {k}: {v}" for k, v in meta["metrics"].items()]
    return "\n".join(lines) + "\n"
