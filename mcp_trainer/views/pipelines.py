"""Pipelines as the API and the tools return them: the pipeline's status and progress, each stage with
its task, and the graph."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from mcp_trainer.views.tasks import iso

__all__ = ["PipelineListItem", "PipelinePage", "PipelineStatusView", "StageView", "iso"]


class StageView(BaseModel):
    name: str
    status: str = Field(description="pending, queued, running, retrying, completed, failed or cancelled")
    task_id: str | None = Field(None, description="its latest task (get_task_status has the details)")
    task_type: str | None = None
    depends_on: list[str] = Field(default_factory=list, description="the stages it waits for")
    progress: float = Field(description="percent, 0-100")
    phase: str | None = None
    attempts: int = Field(description="runs of this stage since the pipeline was submitted or retried")
    max_attempts: int
    started_at: str | None = None
    finished_at: str | None = None
    outputs: dict[str, Any] | None = Field(None, description="once completed: what later stages may use")
    note: str | None = Field(None, description="why it was skipped, or why its task could not be submitted")
    error: str | None = Field(None, description="its task's error, when it failed")


class PipelineStatusView(BaseModel):
    pipeline_id: str
    name: str
    user_id: str | None
    template: str | None = None
    status: str = Field(description="queued, running, completed, failed or cancelled")
    progress: float = Field(description="percent over all stages, 0-100")
    stages_total: int
    stages_completed: int
    created_at: str
    finished_at: str | None = None
    cancel_requested: bool
    retries: int = Field(description="retry_pipeline calls so far")
    stages: list[StageView]
    edges: list[tuple[str, str]] = Field(description="the graph: (stage, a stage that waits for it)")


class PipelineListItem(BaseModel):
    pipeline_id: str
    name: str
    user_id: str | None
    status: str
    progress: float
    stages_total: int
    stages_completed: int
    created_at: str


class PipelinePage(BaseModel):
    pipelines: list[PipelineListItem]
    total: int = Field(description="pipelines matching the filters")
    next_offset: int | None = Field(None, description="pass back as offset for the next page")
