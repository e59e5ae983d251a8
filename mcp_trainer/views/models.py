"""Views of saved models: listings, full metadata, reports, predictions and generations."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from mcp_trainer.views.tasks import iso

__all__ = [
    "Evaluation",
    "Generation",
    "ModelInfo",
    "ModelPage",
    "ModelReport",
    "ModelSummary",
    "Predictions",
    "ReportPlot",
    "RowNote",
]


class ModelSummary(BaseModel):
    """A saved model in a listing."""

    model_id: str
    task_id: str | None
    task_type: str | None
    family: str | None
    name: str | None
    user_id: str | None
    created_at: str | None
    metrics: dict[str, float]
    cv_score: float | None

    @classmethod
    def of(cls, meta: dict[str, Any]) -> ModelSummary:
        return cls(
            model_id=meta["model_id"],
            task_id=meta.get("task_id"),
            task_type=meta.get("task_type"),
            family=meta.get("family"),
            name=meta.get("name"),
            user_id=meta.get("user_id"),
            created_at=iso(meta.get("created_at")),
            metrics=meta.get("metrics") or {},
            cv_score=meta.get("cv_score"),
        )


class ModelPage(BaseModel):
    models: list[ModelSummary]
    total: int
    next_cursor: str | None = None


class ModelInfo(ModelSummary):
    """Everything recorded about a model: parameters, features, target, data hash, versions, timings."""

    best_params: dict[str, Any]
    scoring: str | None
    n_trials_completed: int | None
    features: dict[str, Any]
    target: list[str]
    classes: list[Any] | None
    data: dict[str, Any]
    versions: dict[str, str]
    timings_s: dict[str, float]
    rows: dict[str, int]
    model_sha256: str = Field(description="scikit-learn models: sha256 of model.pkl")
    model_files: dict[str, str] = Field(description="fine-tunes: sha256 of each file from_pretrained reads")
    training: dict[str, Any] = Field(description="fine-tunes: device, steps, throughput, GPU memory, retries")
    parameters: dict[str, Any]
    feature_importances: dict[str, Any] = Field(
        description="permutation importances on the held-out split (every model; pending while the plots "
        "are drawn), and the model's own"
    )
    reports: list[str]
    plots_being_drawn: list[str] = Field(default_factory=list, description="get_model_report lists them soon")

    @classmethod
    def full(
        cls, meta: dict[str, Any], reports: list[str], being_drawn: list[str] | None = None
    ) -> ModelInfo:
        return cls(
            **ModelSummary.of(meta).model_dump(),
            best_params=meta.get("best_params") or {},
            scoring=meta.get("scoring"),
            n_trials_completed=meta.get("n_trials_completed"),
            features=meta.get("features") or {},
            target=meta.get("target") or [],
            classes=meta.get("classes"),
            data=meta.get("data") or {},
            versions=meta.get("versions") or {},
            timings_s=meta.get("timings_s") or {},
            rows=meta.get("rows") or {},
            model_sha256=meta.get("model_sha256", ""),
            model_files=meta.get("model_files") or {},
            training=meta.get("training") or {},
            parameters=meta.get("parameters") or {},
            feature_importances=meta.get("feature_importances") or {},
            reports=reports,
            plots_being_drawn=being_drawn or [],
        )


class Generation(BaseModel):
    model_id: str
    prompt: str
    completion: str = Field(description="the generated continuation (without the prompt)")
    n_new_tokens: int
    finished: bool = Field(description="true when the model ended the text itself before max_new_tokens")


class RowNote(BaseModel):
    """Something about one input row the caller should know (the prediction is made all the same)."""

    row: int = Field(description="0-based index of the row")
    column: str
    value: Any
    note: str


class Predictions(BaseModel):
    model_id: str
    n_rows: int
    predictions: list[Any]
    classes: list[Any] | None = Field(None, description="class labels, in the order of each probability row")
    probabilities: list[list[float]] | None = Field(
        None, description="per-class probabilities, for classifiers that estimate them"
    )
    notes: list[RowNote] = Field(
        default_factory=list, description="per row: a category the model never saw in training, etc."
    )


class ReportPlot(BaseModel):
    """One report plot of a model, and whether this answer carries its image."""

    name: str = Field(description="pass it in `plots` to ask for this image")
    file: str = Field(description="the PNG file on the server's machine")
    bytes: int
    description: str
    included: bool = Field(description="whether this answer carries the image")


class Evaluation(BaseModel):
    """An evaluate task's scores of this model on a data file, and its plots of those rows."""

    task_id: str = Field(description="the evaluate task")
    data_source: str | None
    target: list[str]
    n_rows: int | None
    metrics: dict[str, float]
    created_at: str | None
    plots: list[ReportPlot] = Field(description="named '<task_id>/<plot>': pass that in `plots`")
    not_drawn: dict[str, str] = Field(default_factory=dict, description="plots it lacks, with the reason")


class ModelReport(BaseModel):
    """A model's readable summary and its report plots (the images travel as MCP image content)."""

    model_id: str
    summary: str = Field(description="reports/summary.md: task, data, best parameters, metrics, plots")
    plots: list[ReportPlot] = Field(description="the plots this model has, in report order")
    not_drawn: dict[str, str] = Field(description="plots this model lacks, with the reason")
    being_drawn: list[str] = Field(
        default_factory=list, description="plots still being drawn; ask again soon"
    )
    evaluations: list[Evaluation] = Field(
        default_factory=list, description="evaluate tasks' scores of this model on other data, newest first"
    )
    note: str | None = Field(None, description="what was left out of this answer and how to ask for it")
