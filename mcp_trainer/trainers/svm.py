"""Support-vector classification and regression, tuned by an Optuna search scored by cross-validation."""

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
from sklearn.multioutput import MultiOutputRegressor
from sklearn.pipeline import Pipeline
from sklearn.svm import SVC, SVR

from mcp_trainer.artifacts import save_model_dir
from mcp_trainer.models import TaskResult
from mcp_trainer.specs import SVMSpec
from mcp_trainer.trainers.base import DataError, Trainer, WorkerContext
from mcp_trainer.trainers.study import open_study
from mcp_trainer.trainers.tabular import TabularData, build_preprocessor, load_tabular

__all__ = ["SEARCH_SPACE", "SVMTrainer"]

log = logging.getLogger(__name__)

# The search space, in one place. (low, high, log scale)
SEARCH_SPACE: dict[str, Any] = {
    "kernel": ["linear", "rbf", "poly", "sigmoid"],
    "C": (1e-3, 1e3, True),
    "gamma": (1e-4, 1e1, True),
    "degree": (2, 4, False),
    "epsilon": (1e-3, 1.0, True),
}
# Progress bands: loading 0-5 %, search 5-90 %, final fit 90-95 %, evaluation and saving 95-100 %.
_SEARCH_START, _SEARCH_END = 5.0, 90.0


def _suggest(trial: optuna.trial.BaseTrial, spec: SVMSpec) -> dict[str, Any]:
    kernel = spec.kernel or trial.suggest_categorical("kernel", SEARCH_SPACE["kernel"])
    params: dict[str, Any] = {"kernel": kernel}
    lo, hi, log_scale = SEARCH_SPACE["C"]
    params["C"] = spec.C if spec.C is not None else trial.suggest_float("C", lo, hi, log=log_scale)
    if kernel != "linear":
        lo, hi, log_scale = SEARCH_SPACE["gamma"]
        params["gamma"] = (
            spec.gamma if spec.gamma is not None else trial.suggest_float("gamma", lo, hi, log=log_scale)
        )
    if kernel == "poly":
        lo, hi, _ = SEARCH_SPACE["degree"]
        params["degree"] = spec.degree if spec.degree is not None else trial.suggest_int("degree", lo, hi)
    if not spec.is_classification:
        lo, hi, log_scale = SEARCH_SPACE["epsilon"]
        params["epsilon"] = (
            spec.epsilon
            if spec.epsilon is not None
            else trial.suggest_float("epsilon", lo, hi, log=log_scale)
        )
    return params


def _fixed_params(spec: SVMSpec) -> dict[str, Any]:
    """Parameters without a search: the caller's, else scikit-learn's defaults."""
    kernel = spec.kernel or "rbf"
    params: dict[str, Any] = {"kernel": kernel, "C": spec.C if spec.C is not None else 1.0}
    if kernel != "linear":
        params["gamma"] = spec.gamma if spec.gamma is not None else "scale"
    if kernel == "poly":
        params["degree"] = spec.degree if spec.degree is not None else 3
    if not spec.is_classification:
        params["epsilon"] = spec.epsilon if spec.epsilon is not None else 0.1
    return params


def _estimator(spec: SVMSpec, data: TabularData, params: dict[str, Any]) -> Pipeline:
    model: Any
    if spec.is_classification:
        model = SVC(**params, random_state=spec.random_state)
    else:
        model = SVR(**params)
        if len(data.targets) > 1:
            model = MultiOutputRegressor(model)
    return Pipeline([("preprocess", build_preprocessor(data, scale=spec.scale_features)), ("model", model)])


def _held_out_metrics(spec: SVMSpec, pipe: Pipeline, X: pd.DataFrame, y: Any) -> dict[str, float]:
    pred = pipe.predict(X)
    if spec.is_classification:
        out = {
            "accuracy": skm.accuracy_score(y, pred),
            "balanced_accuracy": skm.balanced_accuracy_score(y, pred),
            "f1_macro": skm.f1_score(y, pred, average="macro", zero_division=0),
            "precision_macro": skm.precision_score(y, pred, average="macro", zero_division=0),
            "recall_macro": skm.recall_score(y, pred, average="macro", zero_division=0),
        }
        if len(np.unique(y)) == 2:
            out["roc_auc"] = skm.roc_auc_score(y, pipe.decision_function(X))
    else:
        out = {
            "r2": skm.r2_score(y, pred),
            "mae": skm.mean_absolute_error(y, pred),
            "rmse": math.sqrt(skm.mean_squared_error(y, pred)),
        }
    return {k: round(float(v), 6) for k, v in out.items()}


class SVMTrainer(Trainer):
    def run(self, ctx: WorkerContext) -> TaskResult:
        spec = ctx.record.spec
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
        reports: dict[str, str | bytes] = {}
        search_started = time.perf_counter()
        if spec.optimize_hyperparameters:
            best_params, cv_score, n_done, trials_csv = self._search(
                ctx, spec, data, X_train, y_train, cv, scoring
            )
            reports["trials.csv"] = trials_csv
        else:
            best_params = _fixed_params(spec)
        search_s = time.perf_counter() - search_started

        ctx.check_stop()
        ctx.report(phase="training", percent=_SEARCH_END, eta_s=None, force=True)
        fit_started = time.perf_counter()
        final = _estimator(spec, data, best_params)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            final.fit(X_train, y_train)
        fit_s = time.perf_counter() - fit_started
        ctx.check_stop()
        ctx.report(phase="evaluating", percent=95.0, force=True)
        held_out = _held_out_metrics(spec, final, X_test, y_test)
        ctx.report(phase="saving", percent=97.0, force=True)

        metadata = self._metadata(ctx, spec, data, best_params, cv_score, held_out, n_done)
        metadata["timings_s"] = {
            "load": round(load_s, 3),
            "search": round(search_s, 3),
            "final_fit": round(fit_s, 3),
            "total": round(time.perf_counter() - started, 3),
        }
        metadata["rows"] = {
            "train": len(X_train),
            "test": len(X_test),
            "dropped_missing_target": data.rows_dropped,
        }
        reports["summary.md"] = _summary(ctx.model_id, spec, metadata)
        path = save_model_dir(
            ctx.models_dir, ctx.model_id, lambda p: joblib.dump(final, p), metadata, reports
        )
        ctx.report(phase="done", percent=100.0, eta_s=0.0, force=True)
        return TaskResult(
            model_id=ctx.model_id,
            model_dir=str(path),
            metrics=held_out,
            cv_score=cv_score,
            best_params=best_params,
            n_trials_completed=n_done,
        )

    def _search(
        self,
        ctx: WorkerContext,
        spec: SVMSpec,
        data: TabularData,
        X: pd.DataFrame,
        y: Any,
        cv: KFold | StratifiedKFold,
        scoring: str,
    ) -> tuple[dict[str, Any], float, int, str]:
        study = open_study(
            ctx.work_dir, study_name=ctx.record.task_id, direction="maximize", seed=spec.random_state
        )
        finished_states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL)
        done = len(study.get_trials(deepcopy=False, states=finished_states))
        if done:
            log.info("resuming the search: %d of %d trials already finished", done, spec.n_trials)
        durations: list[float] = []

        def objective(trial: optuna.Trial) -> float:
            ctx.check_stop()
            params = _suggest(trial, spec)
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                scores = cross_val_score(
                    _estimator(spec, data, params), X, y, cv=cv, scoring=scoring, error_score=np.nan
                )
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
                percent=_SEARCH_START + (_SEARCH_END - _SEARCH_START) * finished / spec.n_trials,
                eta_s=round(mean * remaining + mean / spec.cv_folds, 2),
            )
            ctx.check_stop()

        ctx.report(phase="searching", trial=done, n_trials=spec.n_trials, percent=_SEARCH_START, force=True)
        remaining = spec.n_trials - done
        if remaining > 0:
            study.optimize(objective, n_trials=remaining, callbacks=[after_trial])
        best = _best_or_none(study)
        if best is None:
            raise DataError(
                f"None of the {spec.n_trials} trials produced a score: every model failed on this data.",
                "Check the task log for the reason; fix the kernel or C/gamma, or the data.",
            )
        params = _suggest(optuna.trial.FixedTrial(best.params), spec)
        trials = study.trials_dataframe(attrs=("number", "value", "state", "params", "duration"))
        return params, round(float(best.value or 0.0), 6), len(study.trials), trials.to_csv(index=False)

    def _metadata(
        self,
        ctx: WorkerContext,
        spec: SVMSpec,
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


def _best_or_none(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    return max(complete, key=lambda t: t.value if t.value is not None else -math.inf) if complete else None


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _summary(model_id: str, spec: SVMSpec, meta: dict[str, Any]) -> str:
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
