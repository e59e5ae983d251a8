"""Which features a trained model relies on.

- Permutation importance, for every model: on the held-out split, each input column is shuffled in turn
  and the drop in the task's score is measured (averaged over a few repeats). It speaks of the columns
  the caller gave, categorical and date columns included, whatever the model.
- The model's own importances, where it has them: trees' impurity-based `feature_importances_`, or the
  absolute coefficients of a linear model (averaged over classes), on the encoded features the model
  sees (one-hot categories, date parts), after scaling.

Permutation importance costs one prediction per column and repeat: the repeats are chosen so that it
takes about 0.3 s (between 2 and 5 repeats), on at most 1,000 held-out rows; past ~10 s for the two
repeats it is skipped and the reason recorded. It is computed after the model is saved, with the report
plots (the task completes without waiting for it): until then the metadata holds `PERMUTATION_PENDING`.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import numpy as np
import pandas as pd
from sklearn.inspection import permutation_importance
from sklearn.metrics import get_scorer

__all__ = ["PERMUTATION_PENDING", "model_importances", "permutation_importances"]

log = logging.getLogger(__name__)
_MAX_ROWS = 1000
_BUDGET_S, _SKIP_PAST_S, _MIN_REPEATS, _MAX_REPEATS = 0.3, 10.0, 2, 5


PERMUTATION_PENDING = {"pending": "computed after the model is saved, with the report plots"}


def permutation_importances(model: Any, X: pd.DataFrame, y: Any, scoring: str, seed: int) -> dict[str, Any]:
    """`{"scoring", "repeats", "rows", "mean", "std"}` ranked high to low, or `{"skipped": why}`."""
    if len(X) > _MAX_ROWS:
        rows = np.random.default_rng(seed).choice(len(X), _MAX_ROWS, replace=False)
        X, y = X.iloc[rows], np.asarray(y)[rows]
    scorer = get_scorer(scoring)
    started = time.perf_counter()
    try:
        scorer(model, X, y)
    except Exception as exc:
        return {"skipped": f"the model could not be scored on the held-out rows: {type(exc).__name__}: {exc}"}
    one = time.perf_counter() - started
    columns = len(X.columns)
    if _MIN_REPEATS * one * columns > _SKIP_PAST_S:
        return {"skipped": f"it would take ~{_MIN_REPEATS * one * columns:.0f} s ({columns} columns, twice)"}
    repeats = max(_MIN_REPEATS, min(_MAX_REPEATS, math.floor(_BUDGET_S / max(one * columns, 1e-9))))
    try:
        result = permutation_importance(model, X, y, scoring=scoring, n_repeats=repeats, random_state=seed)
    except Exception as exc:
        log.warning("permutation importance failed: %s: %s", type(exc).__name__, exc)
        return {"skipped": f"{type(exc).__name__}: {exc}"}
    order = np.argsort(-result.importances_mean)
    names = [str(c) for c in X.columns]
    return {
        "scoring": scoring,
        "repeats": repeats,
        "rows": len(X),
        "mean": {names[i]: round(float(result.importances_mean[i]), 6) for i in order},
        "std": {names[i]: round(float(result.importances_std[i]), 6) for i in order},
    }


def model_importances(model: Any, columns: list[Any]) -> dict[str, Any] | None:
    """The model's own importances (`{"kind", "values"}` ranked high to low), or None when it has none."""
    estimator = getattr(model, "named_steps", {}).get("model", model)
    if hasattr(estimator, "feature_importances_"):
        kind, values = "impurity", np.asarray(estimator.feature_importances_, dtype=float)
    elif hasattr(estimator, "coef_") and _has_coef(estimator):
        coef = np.abs(np.asarray(estimator.coef_, dtype=float))
        kind, values = "abs_coefficient", coef.reshape(-1, coef.shape[-1]).mean(axis=0)
    else:
        return None
    names = _encoded_names(model, len(values), [str(c) for c in columns])
    order = np.argsort(-values)
    return {"kind": kind, "values": {names[i]: round(float(values[i]), 6) for i in order}}


def _has_coef(estimator: Any) -> bool:
    try:  # an SVC has coef_ only with a linear kernel; asking otherwise raises
        return np.asarray(estimator.coef_).size > 0
    except (AttributeError, ValueError):
        return False


def _encoded_names(model: Any, n: int, columns: list[str]) -> list[str]:
    preprocess: Any = getattr(model, "named_steps", {}).get("preprocess")
    try:
        names = [str(name) for name in preprocess.get_feature_names_out()]
    except Exception:  # "passthrough": the model sees the columns themselves
        names = columns
    names = [name.split("__", 1)[-1] for name in names]  # "numeric__x1" -> "x1"
    return names if len(names) == n else [f"feature_{i}" for i in range(n)]
