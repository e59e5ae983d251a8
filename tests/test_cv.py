"""Folds preprocessed once score every model exactly as cross_val_score on the whole pipeline does."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score, train_test_split
from sklearn.pipeline import Pipeline

from mcp_trainer import TaskStatus, TrainingService
from mcp_trainer.artifacts.model_dir import read_metadata
from mcp_trainer.specs.tabular import TabularSpec
from mcp_trainer.trainers.tabular.cv import prepare_folds
from mcp_trainer.trainers.tabular.data import TabularData, build_preprocessor, load_tabular
from mcp_trainer.trainers.tabular.families import build_model


def _load(path: Path, task_type: str, target: str | list[str], **extra: Any) -> TabularData:
    spec = TabularSpec.model_validate(
        {"task_type": task_type, "data_source": str(path), "target_column": target, **extra}
    )
    return load_tabular(spec)


def _pipeline_scores(data: TabularData, model: Any, cv: Any, scoring: str, *, scale: bool = True) -> Any:
    pipeline = Pipeline([("preprocess", build_preprocessor(data, scale=scale)), ("model", model)])
    return cross_val_score(pipeline, data.X, data.y, cv=cv, scoring=scoring, error_score=np.nan)


@pytest.mark.parametrize(
    ("family", "params"),
    [
        ("svm", {"kernel": "rbf", "C": 3.0, "gamma": 0.2}),
        ("logistic", {"C": 0.5}),
        ("knn", {"n_neighbors": 7}),
        ("random_forest", {"n_estimators": 20, "max_depth": 4}),
        ("hist_gradient_boosting", {"max_iter": 30}),
    ],
)
def test_prepared_folds_score_classifiers_as_cross_val_score_does(
    blobs_csv: Path, family: str, params: dict[str, Any]
) -> None:
    data = _load(blobs_csv, "auto_classification", "label")  # numeric and categorical columns
    assert data.categorical == ["shade"]
    cv = StratifiedKFold(4, shuffle=True, random_state=3)
    folds = prepare_folds(build_preprocessor(data, scale=True), data.X, data.y, cv, "f1_macro")
    assert folds is not None and len(folds) == 4
    got = folds.score(lambda: build_model(family, "classification", params, seed=0))
    want = _pipeline_scores(data, build_model(family, "classification", params, seed=0), cv, "f1_macro")
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_prepared_folds_score_multi_output_regression_with_missing_values_as_cross_val_score_does(
    make_csv: Any,
) -> None:
    rng = np.random.default_rng(4)
    rows: list[list[object]] = []
    for i in range(80):
        a, b = rng.uniform(-2, 2, size=2)
        rows.append(["" if i % 9 == 0 else round(a, 3), round(b, 3), round(2 * a - b, 3), round(a + b, 3)])
    data = _load(make_csv("holes.csv", ["a", "b", "y1", "y2"], rows), "svm_regression", ["y1", "y2"])
    assert bool(data.X.isna().any().any())  # imputed inside each fold, from that fold's rows only
    cv = KFold(5, shuffle=True, random_state=0)
    for scale in (True, False):
        folds = prepare_folds(build_preprocessor(data, scale=scale), data.X, data.y, cv, "r2")
        assert folds is not None
        model = {"kernel": "rbf", "C": 10.0}
        got = folds.score(lambda m=model: build_model("svm", "regression", m, seed=0, n_targets=2))
        want = _pipeline_scores(
            data, build_model("svm", "regression", model, seed=0, n_targets=2), cv, "r2", scale=scale
        )
        np.testing.assert_allclose(got, want, rtol=1e-12)


def test_numeric_data_without_holes_is_not_scaled_but_still_gets_an_imputer_for_predictions(
    regression_csv: Path,
) -> None:
    data = _load(regression_csv, "ridge_regression", "y1", scale_features=False)
    assert not bool(data.X.isna().any().any())
    preprocessor = build_preprocessor(data, scale=False)
    assert [name for name, _ in preprocessor.steps] == ["impute"]
    cv = KFold(3, shuffle=True, random_state=1)
    folds = prepare_folds(preprocessor, data.X, data.y, cv, "neg_mean_absolute_error")
    assert folds is not None
    got = folds.score(lambda: build_model("ridge", "regression", {"alpha": 0.3}, seed=0))
    want = _pipeline_scores(
        data,
        build_model("ridge", "regression", {"alpha": 0.3}, seed=0),
        cv,
        "neg_mean_absolute_error",
        scale=False,
    )
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_a_fold_that_fails_scores_nan_and_is_logged(
    blobs_csv: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = _load(blobs_csv, "knn_classification", "label")
    cv = StratifiedKFold(3, shuffle=True, random_state=0)
    folds = prepare_folds(build_preprocessor(data, scale=True), data.X, data.y, cv, "accuracy")
    assert folds is not None
    # 80 training rows per fold: 500 neighbours cannot be found, so every fold fails.
    with caplog.at_level(logging.WARNING, logger="mcp_trainer.trainers.tabular.cv"):
        scores = folds.score(lambda: build_model("knn", "classification", {"n_neighbors": 500}, seed=0))
    assert np.isnan(scores).all() and len(scores) == 3
    assert "fold 1 of 3 failed: ValueError" in caplog.text


def test_folds_past_the_byte_budget_are_not_prepared(blobs_csv: Path) -> None:
    data = _load(blobs_csv, "svm_classification", "label")
    cv = StratifiedKFold(3, shuffle=True, random_state=0)
    pre = build_preprocessor(data, scale=True)
    assert prepare_folds(pre, data.X, data.y, cv, "accuracy", max_bytes=1024) is None
    assert prepare_folds(pre, data.X, data.y, cv, "accuracy", max_bytes=1 << 20) is not None


@pytest.mark.anyio
async def test_a_searchs_best_cv_score_is_cross_val_score_of_its_best_model(
    queue_dir: Path, models_dir: Path, blobs_csv: Path
) -> None:
    spec = {
        "task_type": "svm_classification",
        "data_source": str(blobs_csv),
        "target_column": "label",
        "n_trials": 4,
        "cv_folds": 4,
        "scoring": "balanced_accuracy",
        "n_parallel_trials": 1,
    }
    async with TrainingService(queue_dir, models_dir) as svc:
        done = await svc.wait((await svc.submit(spec)).task_id, timeout_s=120)
    assert done.status is TaskStatus.COMPLETED, done.error
    assert done.model_id is not None and done.cv_score is not None
    meta = read_metadata(models_dir, done.model_id)

    data = _load(blobs_csv, "svm_classification", "label")
    X_train, _, y_train, _ = train_test_split(data.X, data.y, test_size=0.2, random_state=42, stratify=data.y)
    train = TabularData(**{**vars(data), "X": X_train, "y": y_train})
    model = build_model("svm", "classification", meta["best_params"], seed=42)
    cv = StratifiedKFold(4, shuffle=True, random_state=42)
    want = _pipeline_scores(train, model, cv, "balanced_accuracy").mean()
    assert done.cv_score == pytest.approx(want, abs=1e-6)
