"""What a caller asks of an `evaluate` task: saved tabular models scored on a data file, and compared.

Light on purpose (pydantic only): the server checks the models and the data's columns before queueing
(service/workflow.py); the worker loads each model as `predict` does and scores it
(trainers/evaluate/).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mcp_trainer.ids import check_distinct_ids, check_model_id
from mcp_trainer.specs.sources import PathText

__all__ = ["MAX_EVALUATED", "PRIMARY_METRICS", "EvaluateSpec"]

MAX_EVALUATED = 20
# The metric that names the best model, by kind (ties: the model named first wins).
PRIMARY_METRICS = {"classification": "accuracy", "regression": "r2"}

ModelId = Annotated[str, Field(min_length=1, max_length=100)]


class EvaluateSpec(BaseModel):
    """Score saved tabular models on a data file with the metrics training reports, draw the report plots
    per model (listed by get_model_report), and compare them. Outputs: `best_model_id` (by accuracy for
    classification, r2 for regression: `primary_metric`), `comparison` (rows of model_id, task_type,
    metrics, best first), `report_path` (the comparison as CSV, under the queue's
    `datasets/<task_id>/`). The task's metrics are the best model's. No model is made.

    Every field is a parameter of the `submit_evaluation_task` tool, whose schema is generated from it."""

    model_config = ConfigDict(extra="forbid")

    task_type: Literal["evaluate"] = Field(description="Always 'evaluate'.")
    model_id: ModelId | None = Field(default=None, description="The model to score.")
    model_ids: Annotated[list[ModelId], Field(min_length=1, max_length=MAX_EVALUATED)] | None = Field(
        default=None, description="Or several models to compare, all classifiers or all regressors."
    )
    data_source: PathText = Field(
        description="Absolute path of a .csv, .tsv, .jsonl or .parquet file, or sklearn:<name>, holding "
        "the models' features and the true values."
    )
    target_column: str | list[str] | None = Field(
        default=None, description="Column(s) of true values; default the models' own target."
    )

    @property
    def models(self) -> list[str]:
        """The models to score, in the order given."""
        return [self.model_id] if self.model_id is not None else list(self.model_ids or [])

    @property
    def targets(self) -> list[str] | None:
        if self.target_column is None:
            return None
        return [self.target_column] if isinstance(self.target_column, str) else list(self.target_column)

    @model_validator(mode="after")
    def _consistent(self) -> EvaluateSpec:
        if (self.model_id is None) == (self.model_ids is None):
            raise ValueError("give model_id (one model) or model_ids (several), not both and not neither")
        check_distinct_ids(self.models, check_model_id, "model_ids", "a model")
        targets = self.targets
        if targets is not None and (
            not targets or any(not t for t in targets) or len(set(targets)) < len(targets)
        ):
            raise ValueError("target_column: name each column of true values once")
        return self

    def outputs(self) -> frozenset[str]:
        """The named outputs its result holds (a later pipeline stage may refer to them)."""
        return frozenset({"best_model_id", "primary_metric", "comparison", "report_path"})
