"""What a caller asks of a `cleanup` task: the intermediate files of ended tasks removed.

Light on purpose (pydantic only): the server refuses tasks that have not ended (service/workflow.py); the
worker checks again and removes (engine/cleanup.py).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mcp_trainer.ids import check_distinct_ids, check_task_id

__all__ = ["CLEANUP_PARTS", "MAX_NAMED_TASKS", "CleanupSpec"]

MAX_NAMED_TASKS = 1000
# What a cleanup may remove of a task: a fine-tune's checkpoints (work/<task_id>/checkpoints/), the whole
# work folder (work/<task_id>/: a search's study, checkpoints), and what a task wrote for later stages
# (datasets/<task_id>/: a preprocess task's files, an evaluation's comparison).
Part = Literal["checkpoints", "work", "datasets"]
CLEANUP_PARTS: tuple[Part, ...] = ("checkpoints", "work", "datasets")


class CleanupSpec(BaseModel):
    """Remove the intermediate files of ended tasks: checkpoints, work folders, datasets written by
    preprocess tasks. Models only with delete_models=true, and only those of the tasks named in
    task_ids. Tasks still waiting or running are refused. Outputs: `removed` (paths, the first 500),
    `n_removed`, `freed_bytes`. No model is made.

    Every field is a parameter of the `submit_cleanup_task` tool, whose schema is generated from it."""

    model_config = ConfigDict(extra="forbid")

    task_type: Literal["cleanup"] = Field(description="Always 'cleanup'.")
    task_ids: Annotated[list[str], Field(min_length=1, max_length=MAX_NAMED_TASKS)] | None = Field(
        default=None, description="Ended tasks whose files go."
    )
    older_than_days: Annotated[float, Field(ge=0, le=36500)] | None = Field(
        default=None, description="And/or every task that ended more than this many days ago."
    )
    remove: Annotated[list[Part], Field(min_length=1)] = Field(
        default_factory=lambda: list(CLEANUP_PARTS),
        description="What goes: checkpoints, work (the whole work folder), datasets; default all.",
    )
    delete_models: bool = Field(
        default=False, description="Also delete the models of the tasks in task_ids (never of the others)."
    )
    dry_run: bool = Field(default=False, description="Remove nothing; the outputs say what would go.")

    @model_validator(mode="after")
    def _consistent(self) -> CleanupSpec:
        if self.task_ids is None and self.older_than_days is None:
            raise ValueError("name task_ids, or older_than_days, or both: which tasks to clean up")
        if self.delete_models and not self.task_ids:
            raise ValueError("delete_models removes the models of the tasks named in task_ids: name them")
        check_distinct_ids(self.task_ids or [], check_task_id, "task_ids", "a task")
        if len(set(self.remove)) != len(self.remove):
            raise ValueError("remove names a part twice")
        return self

    def outputs(self) -> frozenset[str]:
        """The named outputs its result holds (a later pipeline stage may refer to them)."""
        return frozenset({"removed", "n_removed", "freed_bytes", "dry_run"})
