"""What a trained tabular model's directory says about it: held-out metrics, metadata.json, summary.md."""

from __future__ import annotations

import math
import platform
import time
from typing import Any

import numpy as np
import optuna
import pandas as pd
import sklearn
from sklearn import metrics as skm
from sklearn.utils.multiclass import unique_labels

from mcp_trainer.specs.tabular import TabularSpec
from mcp_trainer.trainers.base import WorkerContext
from mcp_trainer.trainers.tabular.data import TabularData

__all__ = ["classification_metrics", "held_out_metrics", "metadata_for", "metrics_of", "summary_markdown"]


def held_out_metrics(spec: TabularSpec, y: Any, pred: Any, scores: Any) -> dict[str, float]:
    return metrics_of(spec.is_classification, y, pred, scores)


def metrics_of(classification: bool, y: Any, pred: Any, scores: Any) -> dict[str, float]:
    """The metrics a model is reported with (training's held-out split, an evaluation's data):
    classification: accuracy, balanced accuracy, macro F1, precision and recall, and ROC AUC for two
    classes with scores; regression: R², MAE and RMSE (averaged over several targets)."""
    if classification:
        out = classification_metrics(y, pred)
        if len(np.unique(y)) == 2 and scores is not None and np.ndim(scores) == 1:
            out["roc_auc"] = skm.roc_auc_score(y, scores)
    else:
        out = {
            "r2": skm.r2_score(y, pred),
            "mae": skm.mean_absolute_error(y, pred),
            "rmse": math.sqrt(skm.mean_squared_error(y, pred)),
        }
    return {k: round(float(v), 6) for k, v in out.items()}


def classification_metrics(y: Any, pred: Any) -> dict[str, float]:
    """Accuracy, balanced accuracy and macro F1, precision and recall (zero_division=0), as scikit-learn's
    functions compute them, from one confusion matrix: the five calls cost ~10 ms of a one-fit task's
    ~50, the matrix ~2 ms (a test holds them equal to scikit-learn's)."""
    labels = unique_labels(y, pred)
    cm = skm.confusion_matrix(y, pred, labels=labels).astype(float)
    tp, true, predicted = np.diag(cm), cm.sum(axis=1), cm.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(true > 0, tp / true, 0.0)
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        f1 = np.where(true + predicted > 0, 2 * tp / (true + predicted), 0.0)  # 2tp / (2tp + fp + fn)
    return {
        "accuracy": tp.sum() / cm.sum(),
        "balanced_accuracy": recall[true > 0].mean(),  # over the classes present in y, as sklearn
        "f1_macro": f1.mean(),
        "precision_macro": precision.mean(),
        "recall_macro": recall.mean(),
    }


def metadata_for(
    ctx: WorkerContext,
    spec: TabularSpec,
    data: TabularData,
    best_params: dict[str, Any],
    cv_score: float | None,
    held_out: dict[str, float],
    n_trials: int | None,
) -> dict[str, Any]:
    """metadata.json of the model: the task, its parameters, the results, the data and the versions."""
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
            "names": data.numeric + data.dates + data.categorical,
            "types": {
                **dict.fromkeys(data.numeric, "numeric"),
                **dict.fromkeys(data.dates, "datetime"),
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


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def summary_markdown(model_id: str, spec: TabularSpec, meta: dict[str, Any]) -> str:
    """The head of reports/summary.md: task, data, best parameters, CV score and held-out metrics."""
    lines = [
        f"# {model_id}",
        "",
        f"- Task: `{meta['task_id']}` ({spec.task_type}), target {', '.join(meta['target'])}",
        f"- Data: `{meta['data']['source']}` "
        f"({meta['rows']['train']} train rows, {meta['rows']['test']} held out)",
    ]
    if spec.family == "auto":
        lines.append(f"- Best family: {meta['family']} (of a search across the {spec.kind} families)")
    lines.append(f"- Best parameters: {meta['best_params']}")
    if meta["cv_score"] is not None:
        failed = meta.get("n_trials_failed") or 0
        lines.append(
            f"- Cross-validated {meta['scoring']}: {meta['cv_score']} "
            f"over {meta['n_trials_completed']} trials" + (f" ({failed} more failed)" if failed else "")
        )
    if meta.get("stopped_early"):
        lines.append("- The search was ended early by stop_training_task; this is its best trial so far")
    lines += [f"- Warning: {w}" for w in meta.get("warnings") or []]
    lines += ["", "## Held-out metrics", ""]
    lines += [f"- {k}: {v}" for k, v in meta["metrics"].items()]
    lines += _importance_lines(meta.get("feature_importances") or {})
    return "\n".join(lines) + "\n"


def _importance_lines(importances: dict[str, Any]) -> list[str]:
    permutation = importances.get("permutation") or {}
    lines = ["", "## Feature importances", ""]
    if "skipped" in permutation:
        lines.append(f"- Permutation importance not computed: {permutation['skipped']}")
    elif "pending" in permutation:
        lines.append(f"- Permutation importance: {permutation['pending']}")
    elif permutation:
        lines.append(
            f"Drop in held-out {permutation['scoring']} when each column is shuffled "
            f"({permutation['repeats']} repeats, {permutation['rows']} rows), the 10 largest:"
        )
        lines.append("")
        for name, mean in list(permutation["mean"].items())[:10]:
            lines.append(f"- {name}: {mean} (± {permutation['std'][name]})")
    own = importances.get("model")
    if own:
        what = "impurity-based importances" if own["kind"] == "impurity" else "absolute coefficients"
        top = ", ".join(f"{name} {value}" for name, value in list(own["values"].items())[:5])
        lines += ["", f"The model's own {what} (on the encoded features), the 5 largest: {top}"]
    return lines if len(lines) > 3 else []
