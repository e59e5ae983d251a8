"""Cross-validation for a search: the folds' preprocessing is done once and shared by every trial.

A trial of a search cross-validates `Pipeline([preprocess, model])`. The preprocessing (impute, scale,
one-hot encode) does not depend on the trial's hyperparameters, so `PreparedFolds` fits it on each
fold's training rows once, keeps both sides of every fold as float arrays, and each trial then fits only
its model. The scores are the ones `cross_val_score(pipeline, X, y, cv=cv, scoring=scoring,
error_score=nan)` gives (the same splits, the same deterministic transforms, the same scorer; a test
checks it), without re-fitting the preprocessing and re-validating a DataFrame in every fold of every
trial: on small data that was most of a trial's time.

The arrays take `folds x rows x features` floats; past `MAX_PREPARED_BYTES` (256 MiB) a search falls
back to the pipeline per fold (`prepare_folds` returns None). Data that large makes each fit take far
longer than its preprocessing, so the cache matters least there, and a task's memory stays bounded.
Forked parallel-trial helpers share the arrays copy-on-write; nothing writes to them.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import get_scorer
from sklearn.model_selection import KFold, StratifiedKFold

__all__ = ["MAX_PREPARED_BYTES", "PreparedFolds", "prepare_folds"]

log = logging.getLogger(__name__)

MAX_PREPARED_BYTES = 256 << 20  # transformed folds kept at most; past it, each trial preprocesses its own


@dataclass(frozen=True)
class _Fold:
    X_train: Any
    y_train: Any
    X_valid: Any
    y_valid: Any


class PreparedFolds:
    """The folds of one search, preprocessed once; `score` cross-validates a model on them."""

    def __init__(self, folds: list[_Fold], scoring: str) -> None:
        self._folds = folds
        self._scorer = get_scorer(scoring)

    def __len__(self) -> int:
        return len(self._folds)

    def score(self, make_model: Callable[[], Any], errors: list[str] | None = None) -> np.ndarray:
        """One score per fold for a fresh `make_model()` fitted on each; NaN where a fold failed (logged,
        as cross_val_score's error_score=nan would, and its error appended to `errors`)."""
        scores = np.full(len(self._folds), np.nan)
        for i, fold in enumerate(self._folds):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    model = make_model().fit(fold.X_train, fold.y_train)
                    scores[i] = self._scorer(model, fold.X_valid, fold.y_valid)
            except Exception as exc:
                log.warning("fold %d of %d failed: %s: %s", i + 1, len(self._folds), type(exc).__name__, exc)
                if errors is not None:
                    errors.append(f"{type(exc).__name__}: {exc}")
        return scores


def prepare_folds(
    preprocessor: Any,
    X: pd.DataFrame,
    y: Any,
    cv: KFold | StratifiedKFold,
    scoring: str,
    *,
    max_bytes: int = MAX_PREPARED_BYTES,
) -> PreparedFolds | None:
    """Fit a clone of `preprocessor` ("passthrough" for none) on each fold's training rows and transform
    both sides. None when the transformed folds would exceed `max_bytes` (or the preprocessing fails on a
    fold: the pipeline path then reports that per trial, as before)."""
    y_array = np.asarray(y)
    folds: list[_Fold] = []
    total = 0
    for train, valid in cv.split(X, y_array):
        try:
            X_train, X_valid = _transform(preprocessor, X.iloc[train], X.iloc[valid])
        except Exception as exc:
            why = f"{type(exc).__name__}: {exc}"
            log.info("preprocessing a fold failed (%s); each trial preprocesses its own folds", why)
            return None
        total += X_train.nbytes + X_valid.nbytes
        if total > max_bytes:
            log.info("preprocessed folds would pass %d MB; each trial preprocesses its own", max_bytes >> 20)
            return None
        folds.append(_Fold(X_train, y_array[train], X_valid, y_array[valid]))
    return PreparedFolds(folds, scoring)


def _transform(preprocessor: Any, train: pd.DataFrame, valid: pd.DataFrame) -> tuple[Any, Any]:
    if isinstance(preprocessor, str) and preprocessor == "passthrough":
        return _array(train), _array(valid)
    fitted = clone(preprocessor)
    return _array(fitted.fit_transform(train)), _array(fitted.transform(valid))


def _array(values: Any) -> Any:
    out = values.to_numpy(dtype="float64") if isinstance(values, pd.DataFrame) else np.asarray(values)
    return np.ascontiguousarray(out, dtype="float64")
