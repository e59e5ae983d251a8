"""What a caller asks for: one pydantic spec per family of task types, validated before a task exists."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mcp_trainer.errors import InvalidInputError
from mcp_trainer.specs.outputs import MODEL_OUTPUTS
from mcp_trainer.specs.sources import BUNDLED, BUNDLED_PREFIX, PathText
from mcp_trainer.specs.spaces import TASK_FAMILIES, Kind, check_params, check_search_space, families_for

__all__ = [
    "CLASSIFICATION_SCORING",
    "MAX_FOLDS",
    "MAX_TRIALS",
    "REGRESSION_SCORING",
    "TABULAR_TASK_TYPES",
    "TabularSpec",
    "TaskType",
]

Kernel = Literal["linear", "rbf", "poly", "sigmoid"]

CLASSIFICATION_SCORING = (
    "accuracy",
    "balanced_accuracy",
    "f1_macro",
    "f1_weighted",
    "precision_macro",
    "recall_macro",
    "roc_auc",
)
REGRESSION_SCORING = (
    "r2",
    "neg_mean_squared_error",
    "neg_root_mean_squared_error",
    "neg_mean_absolute_error",
)

MAX_TRIALS = 1000
MAX_FOLDS = 20


TaskType = Literal[
    "svm_classification",
    "svm_regression",
    "logistic_regression",
    "ridge_regression",
    "elastic_net_regression",
    "knn_classification",
    "knn_regression",
    "random_forest_classification",
    "random_forest_regression",
    "extra_trees_classification",
    "extra_trees_regression",
    "hist_gradient_boosting_classification",
    "hist_gradient_boosting_regression",
    "auto_classification",
    "auto_regression",
]
_SVM_FIELDS = ("kernel", "C", "gamma", "degree", "epsilon")


class TabularSpec(BaseModel):
    """A scikit-learn model on tabular data, optionally tuned by an Optuna search.

    Every field is a parameter of the `submit_training_task` tool, whose schema is generated from this
    model. `params` fixes hyperparameters, `search_space` narrows the ranges searched (spaces.py); the
    svm families also take kernel, C, gamma, degree and epsilon as fields of their own.
    """

    model_config = ConfigDict(extra="forbid")

    task_type: TaskType = Field(
        description="Model family and kind; auto_* searches across the families and keeps the best."
    )
    data_source: PathText = Field(
        description="Absolute path of a .csv, .tsv, .jsonl or .parquet file, or a bundled dataset "
        "sklearn:<name> (get_search_spaces lists them).",
    )
    target_column: str | list[str] | None = Field(
        default=None,
        description="Column to predict (regression: a list for several). A bundled dataset predicts its own "
        "target when it is left out.",
    )
    feature_columns: list[str] | None = Field(
        default=None, description="Input columns; default: every column but the target."
    )
    kernel: Kernel | None = Field(default=None, description="svm: fixes the kernel; default searched.")
    C: Annotated[float, Field(gt=0, le=1e6)] | None = Field(
        default=None, description="svm: fixes C; default searched."
    )
    gamma: Annotated[float, Field(gt=0, le=1e4)] | Literal["scale", "auto"] | None = Field(
        default=None, description="svm: fixes gamma; default searched."
    )
    degree: Annotated[int, Field(ge=1, le=6)] | None = Field(
        default=None, description="svm, poly kernel: fixes the degree; default searched."
    )
    epsilon: Annotated[float, Field(ge=0, le=1e3)] | None = Field(
        default=None, description="svm_regression: fixes the tube width; default searched."
    )
    scale_features: bool = Field(default=True, description="Standardise numeric features.")
    optimize_hyperparameters: bool = Field(
        default=True, description="Search; false trains once with fixed or default parameters."
    )
    n_trials: Annotated[int, Field(ge=1, le=MAX_TRIALS)] = Field(default=50, description="Search trials.")
    cv_folds: Annotated[int, Field(ge=2, le=MAX_FOLDS)] = Field(
        default=5, description="Cross-validation folds per trial."
    )
    scoring: str | None = Field(
        default=None, description="Metric to maximise; default accuracy or r2 (get_search_spaces lists them)."
    )
    test_size: Annotated[float, Field(gt=0.0, le=0.5)] = Field(
        default=0.2, description="Held-out share for the final metrics."
    )
    missing_values: Literal["impute", "error"] = Field(
        default="impute", description="impute fills missing features; error refuses them."
    )
    validate_data: bool = Field(
        default=True, description="Scan the whole file before queueing; false reads the header only."
    )
    random_state: Annotated[int, Field(ge=0, le=2**32 - 1)] = Field(
        default=42, description="Seed of the split, the folds, the search and the models."
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description="Fixed hyperparameters of the family, e.g. {'max_depth': 8}."
    )
    search_space: dict[str, Any] = Field(
        default_factory=dict,
        description="Narrowed ranges: {name: {'low': x, 'high': y}} or {name: [choices]}.",
    )
    families: list[str] | None = Field(
        default=None, description="auto_*: the families to try; default all of the kind."
    )
    n_parallel_trials: Annotated[int, Field(ge=1, le=64)] | None = Field(
        default=None, description="Trials at once, each in its own process; default the CPUs."
    )
    trial_timeout_s: Annotated[float, Field(gt=0, le=7 * 24 * 3600)] | None = Field(
        default=None, description="Ends a trial that runs longer; it fails and the search goes on."
    )
    timeout_s: Annotated[float, Field(gt=0, le=7 * 24 * 3600)] | None = Field(
        default=None, description="Ends the search after this long, keeping the best model so far."
    )

    @property
    def family(self) -> str:
        return TASK_FAMILIES[self.task_type][0]

    @property
    def kind(self) -> Kind:
        return TASK_FAMILIES[self.task_type][1]

    @property
    def is_classification(self) -> bool:
        return self.kind == "classification"

    @property
    def targets(self) -> list[str]:
        assert self.target_column is not None  # set by _default_target for bundled data, else required
        return [self.target_column] if isinstance(self.target_column, str) else list(self.target_column)

    @field_validator("target_column")
    @classmethod
    def _targets_not_empty(cls, value: str | list[str] | None) -> str | list[str] | None:
        if value is None:
            return None
        names = [value] if isinstance(value, str) else value
        if not names or any(not n for n in names):
            raise ValueError("name at least one target column")
        if len(set(names)) != len(names):
            raise ValueError("target columns repeat")
        return value

    @model_validator(mode="after")
    def _default_target(self) -> TabularSpec:
        """A bundled dataset knows what it predicts; a file needs target_column."""
        if self.target_column is None:
            bundled = BUNDLED.get(self.data_source.removeprefix(BUNDLED_PREFIX))
            if not self.data_source.startswith(BUNDLED_PREFIX) or bundled is None:
                raise ValueError(
                    "target_column is required for a data file: name the column to predict "
                    "(only a bundled sklearn:<name> dataset implies its target)"
                )
            targets = bundled.targets
            self.target_column = targets[0] if len(targets) == 1 else list(targets)
        return self

    @model_validator(mode="after")
    def _consistent(self) -> TabularSpec:
        if self.family != "svm":
            flat = [f for f in _SVM_FIELDS if getattr(self, f) is not None]
            if flat:
                raise ValueError(
                    f"{', '.join(flat)} apply to the svm task types only; for {self.task_type} pass "
                    "hyperparameters in params"
                )
        if self.family == "auto":
            if not self.optimize_hyperparameters:
                raise ValueError(
                    f"{self.task_type} chooses a family by searching; keep optimize_hyperparameters"
                )
            if self.params or self.search_space:
                raise ValueError(f"{self.task_type} searches across families; it takes families, not params")
            known = families_for(self.kind)
            for name in self.families or []:
                if name not in known:
                    raise ValueError(f"families: {name!r} is not a {self.kind} family ({', '.join(known)})")
        elif self.families is not None:
            raise ValueError("families applies to auto_classification and auto_regression only")
        else:
            try:
                check_params(self.family, self.kind, self.params)
                check_search_space(self.family, self.kind, self.search_space)
            except InvalidInputError as exc:
                raise ValueError(str(exc)) from None
        if self.is_classification:
            if isinstance(self.target_column, list) and len(self.target_column) > 1:
                raise ValueError(
                    f"{self.task_type} predicts one target column; pass a single name "
                    "(several columns are for the regression task types)"
                )
            if self.epsilon is not None:
                raise ValueError("epsilon applies to regression only; leave it out for classification")
        allowed = CLASSIFICATION_SCORING if self.is_classification else REGRESSION_SCORING
        if self.scoring is not None and self.scoring not in allowed:
            raise ValueError(
                f"scoring {self.scoring!r} is not one of {', '.join(allowed)} for {self.task_type}"
            )
        if self.feature_columns is not None:
            overlap = set(self.feature_columns) & set(self.targets)
            if overlap:
                raise ValueError(f"feature_columns include the target {sorted(overlap)}; remove it")
            if not self.feature_columns:
                raise ValueError("feature_columns is empty; leave it out to use every non-target column")
        return self

    @property
    def effective_scoring(self) -> str:
        return self.scoring or ("accuracy" if self.is_classification else "r2")

    def outputs(self) -> frozenset[str]:
        """The named outputs its result holds, which a later pipeline stage may refer to."""
        return MODEL_OUTPUTS


TABULAR_TASK_TYPES: tuple[str, ...] = tuple(TASK_FAMILIES)
