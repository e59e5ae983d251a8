"""What one trial of a search tries: a family and its hyperparameters, and the estimator they make."""

from __future__ import annotations

from typing import Any

import optuna
from sklearn.pipeline import Pipeline

from mcp_trainer.specs.spaces import FAMILIES, Choice, Kind, families_for, narrow
from mcp_trainer.specs.tabular import TabularSpec
from mcp_trainer.trainers.tabular.data import TabularData, build_preprocessor
from mcp_trainer.trainers.tabular.families import build_model

__all__ = ["estimator_for", "fixed_params", "model_for", "suggest"]

_SVM_FLAT = ("kernel", "C", "gamma", "degree", "epsilon")


def fixed_params(spec: TabularSpec) -> dict[str, Any]:
    """Hyperparameters the caller fixed: `params`, plus the SVM families' own fields."""
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
        if name in overrides:  # the caller's own range, even where the search would not go by itself
            space = narrow(param.space, overrides[name])
            assert space is not None  # overrides were checked at submission
        else:
            space = param.searched_space({**fixed, **chosen}, kind)
        key = prefix + name
        if isinstance(space, Choice):
            chosen[name] = trial.suggest_categorical(key, list(space.choices))
        elif space.integer:
            chosen[name] = trial.suggest_int(key, int(space.low), int(space.high), log=space.log)
        else:
            chosen[name] = trial.suggest_float(key, space.low, space.high, log=space.log)
    return chosen


def suggest(trial: optuna.trial.BaseTrial, spec: TabularSpec) -> tuple[str, dict[str, Any]]:
    """(family, parameters) for one trial; auto task types choose the family too."""
    if spec.family != "auto":
        return spec.family, _suggest_family(
            trial, spec.family, spec.kind, fixed_params(spec), spec.search_space
        )
    family = str(trial.suggest_categorical("family", spec.families or families_for(spec.kind)))
    return family, _suggest_family(trial, family, spec.kind, {}, {}, prefix=f"{family}.")


def model_for(spec: TabularSpec, data: TabularData, family: str, params: dict[str, Any]) -> Any:
    return build_model(family, spec.kind, params, spec.random_state, n_targets=len(data.targets))


def estimator_for(spec: TabularSpec, data: TabularData, family: str, params: dict[str, Any]) -> Pipeline:
    """The whole pipeline a model is saved as: preprocessing, then the model."""
    preprocess = build_preprocessor(data, scale=spec.scale_features)
    return Pipeline([("preprocess", preprocess), ("model", model_for(spec, data, family, params))])
