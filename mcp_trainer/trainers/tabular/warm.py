"""A tiny task's code paths, run once in the forkserver so that every worker forked from it starts warm.

Importing a module is not all a first call costs: scikit-learn imports its dataframe layer (narwhals)
on the first fit, pandas its CSV and Arrow pieces on the first read, and numpy, pandas and scikit-learn
fill caches. In a worker forked from a forkserver that had only imported them, a one-fit task paid
~25 ms more to read its data and ~40 ms more to fit (measured on iris), every time. Here a few rows go
through the same path once, before any fork: read from a CSV file, split, preprocess, fit, predict,
score, dump with joblib.

Nothing here may start a thread pool (a pool started before a fork is broken in every child): the
models used (a linear SVC, logistic regression, a small forest on one job) run no OpenMP, and BLAS
runs on one thread (threads.py). Any failure only costs the warm-up: it is logged, never raised.
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
import warnings
from pathlib import Path

import joblib
from sklearn.model_selection import train_test_split

from mcp_trainer.specs.tabular import TabularSpec
from mcp_trainer.trainers.tabular.data import load_tabular
from mcp_trainer.trainers.tabular.report import class_scores
from mcp_trainer.trainers.tabular.suggest import estimator_for, fixed_params
from mcp_trainer.trainers.tabular.summary import held_out_metrics

__all__ = ["warm_up"]

log = logging.getLogger(__name__)
_FAMILIES = ("svm_classification", "logistic_regression", "random_forest_classification")
_ROWS = "x1,x2,shade,label\n" + "".join(
    f"{i % 7 * 0.5},{(i * 3) % 5 - 2.0},{'abc'[i % 3]},{'yes' if i % 2 else 'no'}\n" for i in range(40)
)


def warm_up() -> None:
    """Run a tiny task of each common family through the worker's code paths (see the module's docs)."""
    try:
        with tempfile.TemporaryDirectory(prefix="mcp-trainer-warm-") as tmp:
            path = Path(tmp) / "warm.csv"
            path.write_text(_ROWS, encoding="utf-8")
            for family in _FAMILIES:
                _one(path, family)
    except Exception:  # a warm-up that fails only leaves the first calls cold
        log.warning("the forkserver's warm-up failed; workers start cold", exc_info=True)


def _one(path: Path, family: str) -> None:
    spec = TabularSpec.model_validate(
        {"task_type": family, "data_source": str(path), "target_column": "label"}
        | {"optimize_hyperparameters": False}
    )
    data = load_tabular(spec)
    X_train, X_test, y_train, y_test = train_test_split(
        data.X, data.y, test_size=0.25, random_state=0, stratify=data.y
    )
    model = estimator_for(spec, data, spec.family, fixed_params(spec))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X_train, y_train)
        pred = model.predict(X_test)
        scores, _ = class_scores(model, X_test)
        held_out_metrics(spec, y_test, pred, scores)
    joblib.dump(model, io.BytesIO())
    log.debug("warmed %s in pid %d", family, os.getpid())
