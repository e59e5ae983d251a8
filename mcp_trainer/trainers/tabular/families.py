"""Estimators of each model family (specs/spaces.py has their parameters and search ranges)."""

from __future__ import annotations

from typing import Any

from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import ElasticNet, LogisticRegression, Ridge
from sklearn.multioutput import MultiOutputRegressor
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.svm import SVC, SVR

from mcp_trainer.specs.spaces import Kind

__all__ = ["build_model"]

# Families whose regressors predict one target only: several targets get one model each.
_SINGLE_OUTPUT = {"svm", "hist_gradient_boosting"}


def build_model(family: str, kind: Kind, params: dict[str, Any], seed: int, n_targets: int = 1) -> Any:
    """An unfitted estimator; parameters not given keep scikit-learn's defaults."""
    classify = kind == "classification"
    model: Any
    if family == "svm":
        model = SVC(**params, random_state=seed) if classify else SVR(**params)
    elif family == "logistic":
        model = LogisticRegression(**params, max_iter=2000, random_state=seed)
    elif family == "ridge":
        model = Ridge(**params, random_state=seed)
    elif family == "elastic_net":
        model = ElasticNet(**params, max_iter=5000, random_state=seed)
    elif family == "knn":
        model = KNeighborsClassifier(**params) if classify else KNeighborsRegressor(**params)
    elif family == "random_forest":
        cls = RandomForestClassifier if classify else RandomForestRegressor
        model = cls(**params, random_state=seed, n_jobs=1)
    elif family == "extra_trees":
        cls = ExtraTreesClassifier if classify else ExtraTreesRegressor
        model = cls(**params, random_state=seed, n_jobs=1)
    elif family == "hist_gradient_boosting":
        cls = HistGradientBoostingClassifier if classify else HistGradientBoostingRegressor
        model = cls(**params, random_state=seed)
    else:
        raise KeyError(family)
    if not classify and n_targets > 1 and family in _SINGLE_OUTPUT:
        model = MultiOutputRegressor(model)
    return model
