"""How a task is queued, whatever it trains: its label, owner, priority and attempts."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["MAX_DEPENDENCIES", "DependencyPolicy", "Priority", "QueueOptions", "SubmitOptions"]

# What a task does when a task it depends on fails or is cancelled: is cancelled too, or runs anyway.
DependencyPolicy = Literal["cancel", "run"]
MAX_DEPENDENCIES = 100


class Priority(StrEnum):
    """Scheduling class; first come, first served within one class."""

    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"

    @property
    def rank(self) -> int:
        return _PRIORITY_RANK[self]


_PRIORITY_RANK = {Priority.HIGH: 0, Priority.NORMAL: 1, Priority.LOW: 2}


class QueueOptions(BaseModel):
    """The queueing options every submit tool takes beside its spec (the tools of tasks that never use a
    GPU take these; the others take `SubmitOptions`)."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(max_length=200)] | None = Field(
        default=None, description="A label for humans."
    )
    user_id: Annotated[str, Field(max_length=200)] | None = Field(
        default=None, description="Who the task is for; the list tools filter on it."
    )
    priority: Priority = Field(
        default=Priority.NORMAL, description="Queue class; first come, first served within one."
    )
    max_attempts: Annotated[int, Field(ge=1, le=10)] = Field(
        default=3, description="Attempts in all when a worker dies unexpectedly."
    )
    idempotency_key: Annotated[str, Field(min_length=1, max_length=200)] | None = Field(
        default=None,
        description="Retrying with the same key returns the task the first call made, never a second one.",
    )
    cpu_cores: Annotated[int, Field(ge=1, le=1024)] | None = Field(
        default=None,
        description="Cores to claim; default n_parallel_trials, else a share of the free ones "
        "(1 to preprocess, evaluate, clean up).",
    )
    memory_gb: Annotated[float, Field(gt=0, le=65536)] | None = Field(
        default=None, description="Memory to claim in GB; default from the data or model size."
    )
    depends_on: Annotated[list[str], Field(max_length=MAX_DEPENDENCIES)] | None = Field(
        default=None,
        description="Task ids that must complete before this task starts; it waits, saying for which.",
    )
    on_dependency_failure: DependencyPolicy = Field(
        default="cancel",
        description="If a task in depends_on fails or is cancelled: 'cancel' this one or 'run' it anyway.",
    )


class SubmitOptions(QueueOptions):
    """The queueing options of the submit tools whose tasks may use a GPU: `QueueOptions` and GPUs."""

    gpu_count: Annotated[float, Field(ge=0, le=64)] | None = Field(
        default=None,
        description="GPUs, or a fraction below 1 to share one; default 1 for a fine-tune if any.",
    )
    gpu_memory_gb: Annotated[float, Field(gt=0, le=4096)] | None = Field(
        default=None, description="Free memory needed on each GPU, in GB."
    )
