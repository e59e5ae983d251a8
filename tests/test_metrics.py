"""The held-out classification metrics, computed from one confusion matrix, equal scikit-learn's own
functions, including classes that only the truth or only the predictions have."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
from sklearn import metrics as skm

from mcp_trainer.trainers.tabular.summary import classification_metrics


def sklearns(y: Any, pred: Any) -> dict[str, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a class predicted but absent from y: sklearn warns, and skips it
        return {
            "accuracy": skm.accuracy_score(y, pred),
            "balanced_accuracy": skm.balanced_accuracy_score(y, pred),
            "f1_macro": skm.f1_score(y, pred, average="macro", zero_division=0),
            "precision_macro": skm.precision_score(y, pred, average="macro", zero_division=0),
            "recall_macro": skm.recall_score(y, pred, average="macro", zero_division=0),
        }


def _cases() -> list[tuple[str, Any, Any]]:
    rng = np.random.default_rng(7)
    cases: list[tuple[str, Any, Any]] = [
        ("perfect", np.array([0, 1, 1, 0]), np.array([0, 1, 1, 0])),
        ("all wrong", np.array(["a", "b"]), np.array(["b", "a"])),
        ("a class never predicted", np.array([0, 1, 2, 2]), np.array([0, 1, 1, 1])),
        ("a class only predicted", np.array(["x", "x", "y"]), np.array(["x", "z", "y"])),
        ("one class in the truth", np.array([1, 1, 1]), np.array([1, 0, 2])),
    ]
    for i in range(20):
        classes = ["neg", "pos"] if i % 2 else ["a", "b", "c", "d"]
        y = rng.choice(classes, rng.integers(5, 60))
        pred = np.where(rng.random(len(y)) < 0.6, y, rng.choice(classes, len(y)))
        cases.append((f"random {i}", y, pred))
    return cases


@pytest.mark.parametrize(("case", "y", "pred"), _cases(), ids=[c[0] for c in _cases()])
def test_the_classification_metrics_equal_scikit_learns_functions(case: str, y: Any, pred: Any) -> None:
    ours, theirs = classification_metrics(y, pred), sklearns(y, pred)
    assert ours.keys() == theirs.keys()
    for name, value in theirs.items():
        assert ours[name] == pytest.approx(value, abs=1e-12), (case, name)
