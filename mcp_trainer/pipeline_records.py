"""A pipeline as stored in `queue/pipelines/<pipeline_id>.json`: its stages, as submitted (references
unresolved), and which tasks each stage has run. A stage's status is not stored: it is its latest task's
(engine/pipeline_plan.py), so the task files stay the one truth about what ran and how it ended."""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, Field

from mcp_trainer.specs.options import Priority

__all__ = ["PipelineRecord", "StageState"]


class StageState(BaseModel):
    name: str
    task: dict[str, Any]  # the submit arguments, ${stage.output} references unresolved
    depends_on: list[str] = Field(default_factory=list)  # the stages it waits for, references' included
    max_attempts: int = 1
    task_ids: list[str] = Field(default_factory=list)  # every task this stage ran, oldest first
    round_start: int = 0  # task_ids before this index ran before the latest retry_pipeline
    skipped: str | None = None  # why it will not run in this round (a stage it needs failed, a cancel)
    error: str | None = None  # why its task could not be submitted (its resolved arguments were refused)
    held: str | None = None  # why its task is not submitted yet although it may run (a full queue or disk)

    def this_round(self) -> list[str]:
        """The tasks it ran since the latest retry_pipeline (all of them before one)."""
        return self.task_ids[self.round_start :]

    def latest(self) -> str | None:
        current = self.this_round()
        return current[-1] if current else None


class PipelineRecord(BaseModel):
    schema_version: int = 1
    pipeline_id: str
    name: str
    user_id: str | None = None
    priority: Priority = Priority.NORMAL
    template: str | None = None  # the template it was made from, if any
    created_at: float = Field(default_factory=time.time)
    stages: list[StageState]
    cancel_requested: bool = False
    retries: int = 0  # retry_pipeline calls
    finished_at: float | None = None  # when the owner last saw it end (completed, failed or cancelled)

    def stage(self, name: str) -> StageState:
        return next(s for s in self.stages if s.name == name)
