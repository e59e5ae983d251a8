"""One saved model scored on evaluation data (worker side): loaded as `predict` loads it, its inputs
typed as in training, scored with training's metrics, its report plots drawn. A problem with the model or
the data is a TaskFailure (data_error) naming the model; what only narrows the result (rows without a
true value, classes or categories the model never saw) comes back as warnings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mcp_trainer.errors import InvalidInputError
from mcp_trainer.records import ErrorKind
from mcp_trainer.specs.evaluate import EvaluateSpec
from mcp_trainer.specs.spaces import TASK_FAMILIES
from mcp_trainer.trainers.base import TaskFailure, WorkerContext
from mcp_trainer.trainers.tabular.predict import load_model, model_inputs, unseen_categories
from mcp_trainer.trainers.tabular.report import (
    HeldOut,
    RenderedReports,
    class_scores,
    draw_reports,
    plan_reports,
)
from mcp_trainer.trainers.tabular.summary import metrics_of

__all__ = ["Scored", "score_model"]

_SEARCH_PLOTS = ("optimization_history", "param_importances")  # a training search's, not an evaluation's


@dataclass
class Scored:
    """What one model made of the evaluation data."""

    model_id: str
    task_type: str
    kind: str  # classification or regression
    targets: list[str]
    n_rows: int
    metrics: dict[str, float]
    plots: RenderedReports
    warnings: list[str] = field(default_factory=list)


def _fail(model_id: str, message: str, hint: str | None = None) -> TaskFailure:
    return TaskFailure(ErrorKind.DATA_ERROR, f"Model {model_id}: {message}", hint)


def score_model(
    ctx: WorkerContext, spec: EvaluateSpec, frame: pd.DataFrame, data_name: str, model_id: str
) -> Scored:
    try:
        model, meta = load_model(ctx.models_dir, model_id, ctx.signer)
    except InvalidInputError as exc:  # deleted since the submit, or changed after training
        raise TaskFailure(ErrorKind.DATA_ERROR, exc.message, exc.hint) from None
    family = TASK_FAMILIES.get(str(meta.get("task_type")))
    if family is None:
        raise _fail(model_id, f"a {meta.get('task_type')} model is not a tabular model evaluate can score.")
    kind = family[1]
    targets = spec.targets or [str(t) for t in meta.get("target") or []]
    missing = [t for t in targets if t not in frame.columns]
    if missing:
        raise _fail(model_id, f"the column(s) of true values {missing} are not in {data_name}.")
    warnings: list[str] = []
    rows = frame.dropna(subset=targets)
    if len(rows) < len(frame):
        warnings.append(
            f"{len(frame) - len(rows)} row(s) of {data_name} have no true value and were not scored"
        )
    if rows.empty:
        raise _fail(model_id, f"no row of {data_name} has a value in {targets}.")
    try:
        X = model_inputs(meta, rows)
    except InvalidInputError as exc:
        raise _fail(model_id, exc.message, exc.hint) from None
    y = _truth(model_id, rows, targets, kind, model, warnings)
    try:
        pred = model.predict(X)
    except ValueError as exc:
        raise _fail(
            model_id, f"it could not predict these rows ({type(exc).__name__}: {str(exc)[:200]})."
        ) from None
    unseen = unseen_categories(model, X)
    if unseen:
        shown = ", ".join(sorted({f"{n['column']}={n['value']!r}" for n in unseen[:5]}))
        warnings.append(f"model {model_id}: values never seen in training (scored as missing), e.g. {shown}")
    classification = kind == "classification"
    scores, source = class_scores(model, X) if classification else (None, None)
    plan = plan_reports(
        held_out=HeldOut(
            y_true=y,
            y_pred=pred,
            targets=targets,
            classes=list(model.classes_) if classification else None,
            scores=scores,
            score_source=source,
            scope=f"evaluation on {data_name}",
        ),
        classification=classification,
    )
    for name in _SEARCH_PLOTS:
        plan.skipped.pop(name, None)
    return Scored(
        model_id=model_id,
        task_type=str(meta.get("task_type")),
        kind=kind,
        targets=targets,
        n_rows=len(rows),
        metrics=metrics_of(classification, y, pred, scores),
        plots=draw_reports(plan, ctx.cpu_share),
        warnings=warnings,
    )


def _truth(
    model_id: str, rows: pd.DataFrame, targets: list[str], kind: str, model: Any, warnings: list[str]
) -> Any:
    """The true values: a classifier's labels (some of which the model must know), a regressor's numbers."""
    if kind == "classification":
        y = rows[targets[0]].to_numpy()
        known = set(np.asarray(model.classes_).tolist())
        seen = set(pd.unique(y).tolist())
        if not seen & known:
            raise _fail(
                model_id,
                f"none of the values of {targets[0]!r} ({sorted(map(str, seen))[:5]}) is one of its classes "
                f"({sorted(map(str, known))[:10]}).",
                "Name the column of true classes in target_column.",
            )
        new = seen - known
        if new:
            warnings.append(
                f"model {model_id}: classes it never saw in training count as errors: "
                f"{sorted(map(str, new))[:5]}"
            )
        return y
    values = rows[targets].apply(pd.to_numeric, errors="coerce")
    bad = [t for t in targets if values[t].isna().any()]
    if bad:
        raise _fail(
            model_id, f"the true values in {bad} are not all numbers; a regressor is scored on numbers."
        )
    y = values.to_numpy(dtype="float64")
    return y[:, 0] if len(targets) == 1 else y
