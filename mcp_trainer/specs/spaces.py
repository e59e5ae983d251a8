"""The model families and their hyperparameter search spaces, documented in one place.

Light (no scikit-learn): the server validates fixed parameters and narrowed ranges against these before a
task exists, and agents read them through the `get_search_spaces` tool. Workers build estimators from them
(trainers/families.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from mcp_trainer.errors import InvalidInputError

__all__ = [
    "FAMILIES",
    "TASK_FAMILIES",
    "Choice",
    "Family",
    "Param",
    "Range",
    "check_params",
    "check_search_space",
    "describe_spaces",
]

Kind = Literal["classification", "regression"]
Params = Mapping[str, Any]


@dataclass(frozen=True)
class Range:
    """A numeric range; `integer` params take whole numbers, `log` ones are searched on a log scale."""

    low: float
    high: float
    log: bool = False
    integer: bool = False

    def contains(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.integer and not float(value).is_integer():
            return False
        return self.low <= value <= self.high


@dataclass(frozen=True)
class Choice:
    choices: tuple[Any, ...]

    def contains(self, value: Any) -> bool:
        return value in self.choices


def _always(params: Params, kind: Kind) -> bool:
    return True


@dataclass(frozen=True)
class Param:
    space: Range | Choice
    doc: str
    # Whether the parameter applies, given the other parameters chosen so far and the kind of task.
    applies: Callable[[Params, Kind], bool] = field(default=_always)
    # A narrower range the search keeps to when the condition holds: a corner of the space where fits
    # take far longer for nothing (a fixed value or the caller's own search_space may still go there).
    searched_when: tuple[Callable[[Params, Kind], bool], Range, str] | None = None

    def searched_space(self, chosen: Params, kind: Kind) -> Range | Choice:
        """The space a search suggests from, given the parameters chosen so far."""
        if self.searched_when is not None and self.searched_when[0](chosen, kind):
            return self.searched_when[1]
        return self.space


@dataclass(frozen=True)
class Family:
    name: str
    kinds: tuple[Kind, ...]
    params: dict[str, Param]
    doc: str


def _kernel_has_gamma(p: Params, kind: Kind) -> bool:
    return p.get("kernel") != "linear"


def _kernel_is_poly(p: Params, kind: Kind) -> bool:
    return p.get("kernel") == "poly"


def _regression(p: Params, kind: Kind) -> bool:
    return kind == "regression"


_TREES = {
    "n_estimators": Param(Range(50, 500, log=True, integer=True), "number of trees"),
    "max_depth": Param(Range(2, 32, log=True, integer=True), "depth limit of each tree"),
    "min_samples_leaf": Param(Range(1, 20, log=True, integer=True), "fewest rows in a leaf"),
    "max_features": Param(Choice(("sqrt", "log2", 1.0)), "features considered at each split"),
}

FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family(
            "svm",
            ("classification", "regression"),
            {
                "kernel": Param(Choice(("linear", "rbf", "poly", "sigmoid")), "kernel function"),
                "C": Param(
                    Range(1e-3, 1e3, log=True),
                    "inverse regularisation strength",
                    searched_when=(_kernel_is_poly, Range(1e-3, 1e2, log=True), "poly kernel"),
                ),
                "gamma": Param(
                    Range(1e-4, 1e1, log=True),
                    "kernel coefficient (not linear)",
                    _kernel_has_gamma,
                    # A poly kernel at high gamma grows as (gamma x.y)^degree: one fold took 39 s, a trial
                    # over 6 minutes, on 1,461 rows of weather data.
                    searched_when=(_kernel_is_poly, Range(1e-4, 1.0, log=True), "poly kernel"),
                ),
                "degree": Param(Range(2, 4, integer=True), "poly kernel degree", _kernel_is_poly),
                "epsilon": Param(
                    Range(1e-3, 1.0, log=True), "no-penalty tube width (regression)", _regression
                ),
            },
            "Support-vector machine (SVC / SVR).",
        ),
        Family(
            "logistic",
            ("classification",),
            {
                "C": Param(Range(1e-4, 1e3, log=True), "inverse regularisation strength"),
                "class_weight": Param(Choice((None, "balanced")), "weigh classes by inverse frequency"),
            },
            "Logistic regression (L2).",
        ),
        Family(
            "ridge",
            ("regression",),
            {"alpha": Param(Range(1e-4, 1e3, log=True), "L2 regularisation strength")},
            "Ridge regression.",
        ),
        Family(
            "elastic_net",
            ("regression",),
            {
                "alpha": Param(Range(1e-4, 1e1, log=True), "regularisation strength"),
                "l1_ratio": Param(Range(0.05, 1.0), "share of L1 in the penalty"),
            },
            "Elastic-net regression (L1 + L2).",
        ),
        Family(
            "knn",
            ("classification", "regression"),
            {
                "n_neighbors": Param(Range(1, 50, log=True, integer=True), "neighbours that vote"),
                "weights": Param(Choice(("uniform", "distance")), "how neighbours are weighed"),
                "p": Param(Choice((1, 2)), "Minkowski power: 1 Manhattan, 2 Euclidean"),
            },
            "k-nearest neighbours.",
        ),
        Family("random_forest", ("classification", "regression"), dict(_TREES), "Random forest."),
        Family("extra_trees", ("classification", "regression"), dict(_TREES), "Extremely randomised trees."),
        Family(
            "hist_gradient_boosting",
            ("classification", "regression"),
            {
                "learning_rate": Param(Range(0.01, 0.3, log=True), "shrinkage per boosting step"),
                "max_iter": Param(Range(50, 500, log=True, integer=True), "boosting steps"),
                "max_leaf_nodes": Param(Range(8, 128, log=True, integer=True), "leaves per tree"),
                "min_samples_leaf": Param(Range(5, 100, log=True, integer=True), "fewest rows in a leaf"),
                "l2_regularization": Param(Range(1e-6, 10.0, log=True), "L2 penalty on leaf values"),
            },
            "Histogram gradient boosting.",
        ),
    )
}

# task_type -> (family, kind); family "auto" searches across every family of the kind.
TASK_FAMILIES: dict[str, tuple[str, Kind]] = {
    "svm_classification": ("svm", "classification"),
    "svm_regression": ("svm", "regression"),
    "logistic_regression": ("logistic", "classification"),
    "ridge_regression": ("ridge", "regression"),
    "elastic_net_regression": ("elastic_net", "regression"),
    "knn_classification": ("knn", "classification"),
    "knn_regression": ("knn", "regression"),
    "random_forest_classification": ("random_forest", "classification"),
    "random_forest_regression": ("random_forest", "regression"),
    "extra_trees_classification": ("extra_trees", "classification"),
    "extra_trees_regression": ("extra_trees", "regression"),
    "hist_gradient_boosting_classification": ("hist_gradient_boosting", "classification"),
    "hist_gradient_boosting_regression": ("hist_gradient_boosting", "regression"),
    "auto_classification": ("auto", "classification"),
    "auto_regression": ("auto", "regression"),
}


def families_for(kind: Kind) -> list[str]:
    return [f.name for f in FAMILIES.values() if kind in f.kinds]


def _known(family: Family) -> str:
    return ", ".join(family.params)


def check_params(family_name: str, kind: Kind, params: Params) -> None:
    """Fixed hyperparameters must be known to the family and inside its bounds."""
    family = FAMILIES[family_name]
    for name, value in params.items():
        param = family.params.get(name)
        if param is None or not param.applies(params, kind):
            raise InvalidInputError(
                f"{family_name} has no parameter {name!r} for {kind}.",
                f"Its parameters are: {_known(family)}.",
            )
        if not param.space.contains(value):
            raise InvalidInputError(
                f"{family_name} parameter {name}={value!r} is outside what it takes ({_show(param.space)}).",
                "Pick a value inside that range, or leave it out to let the search tune it.",
            )


def check_search_space(family_name: str, kind: Kind, overrides: Mapping[str, Any]) -> None:
    """Narrowed ranges must stay inside the family's bounds (or be a subset of its choices)."""
    family = FAMILIES[family_name]
    for name, override in overrides.items():
        param = family.params.get(name)
        if param is None:
            raise InvalidInputError(
                f"{family_name} has no parameter {name!r} to search.",
                f"Its parameters are: {_known(family)}.",
            )
        narrowed = narrow(param.space, override)
        if narrowed is None:
            raise InvalidInputError(
                f"search_space[{name!r}] = {override!r} is not inside {_show(param.space)}.",
                "Give {'low': x, 'high': y} inside those bounds with low <= high, or a list of choices.",
            )


def narrow(space: Range | Choice, override: Any) -> Range | Choice | None:
    """The space narrowed by a caller's override, or None when the override does not fit."""
    if isinstance(space, Choice):
        values = (
            override
            if isinstance(override, list)
            else override.get("choices")
            if isinstance(override, dict)
            else None
        )
        if not values or any(v not in space.choices for v in values):
            return None
        return Choice(tuple(values))
    if not isinstance(override, dict) or not set(override) <= {"low", "high"}:
        return None
    low, high = override.get("low", space.low), override.get("high", space.high)
    if not (space.contains(low) and space.contains(high)) or low > high:
        return None
    return Range(float(low), float(high), space.log, space.integer)


def _show(space: Range | Choice) -> str:
    if isinstance(space, Choice):
        return "one of " + ", ".join(repr(c) for c in space.choices)
    kind = "whole numbers" if space.integer else "numbers"
    scale = ", log scale" if space.log else ""
    return f"{kind} from {space.low:g} to {space.high:g}{scale}"


def _describe(param: Param) -> dict[str, str]:
    out = {"range": _show(param.space), "meaning": param.doc}
    if param.searched_when is not None:
        _, narrower, when = param.searched_when
        out["searched"] = f"with a {when}, the search keeps to {_show(narrower)}"
    return out


def describe_spaces() -> dict[str, Any]:
    """Every family's parameters and ranges, and the task types that use them, as plain data."""
    return {
        "families": {
            f.name: {
                "description": f.doc,
                "kinds": list(f.kinds),
                "params": {name: _describe(p) for name, p in f.params.items()},
            }
            for f in FAMILIES.values()
        },
        "task_types": {t: {"family": fam, "kind": kind} for t, (fam, kind) in TASK_FAMILIES.items()},
    }
