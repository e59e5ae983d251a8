"""Task records: what the queue stores for each task (`queue/<task_id>.json`) and the API returns: its
status and the transitions it allows, progress, classified errors, the result. (Priority is a submit option,
specs/options.py, re-exported here.)"""

from __future__ import annotations

import time
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from mcp_trainer.specs import TaskSpec
from mcp_trainer.specs.options import DependencyPolicy, Priority
from mcp_trainer.specs.resources import Grant, ResourceRequest

__all__ = [
    "MAX_WARNINGS",
    "Alert",
    "ErrorKind",
    "Priority",
    "Progress",
    "Severity",
    "TaskError",
    "TaskRecord",
    "TaskResult",
    "TaskStatus",
    "TrainingProgress",
    "Transition",
    "with_warning",
]

MAX_HISTORY = 200  # transitions kept in a record
MAX_WARNINGS = 20  # a record stays small: past this, one line counts the warnings left out
_MORE = "more warnings, in the task's log: "


def with_warning(warnings: list[str], message: str) -> list[str]:
    """`warnings` with `message` added once, at most MAX_WARNINGS lines in all (the last counts the rest)."""
    if message in warnings:
        return warnings
    if len(warnings) < MAX_WARNINGS - 1:
        return [*warnings, message]
    if len(warnings) == MAX_WARNINGS - 1:
        return [*warnings, f"{_MORE}1"]
    more = int(warnings[-1].removeprefix(_MORE)) if warnings[-1].startswith(_MORE) else 0
    return [*warnings[:-1], f"{_MORE}{more + 1}"]


def _clipped(limit: int) -> AfterValidator:
    def clip(text: str) -> str:
        return text if len(text) <= limit else text[: limit - 1] + "…"

    return AfterValidator(clip)


class TaskStatus(StrEnum):
    """Where a task is in its lifecycle. The enum knows its own rules."""

    QUEUED = "queued"  # waiting for a free slot
    RUNNING = "running"  # a worker process is executing it
    RETRYING = "retrying"  # an attempt failed in a retryable way; waits for its next attempt
    COMPLETED = "completed"  # finished; the model is saved (terminal)
    FAILED = "failed"  # ended with a classified error (terminal)
    CANCELLED = "cancelled"  # stopped on request; not a failure (terminal)

    def is_terminal(self) -> bool:
        return self in _TERMINAL

    def is_waiting(self) -> bool:
        """Queued or retrying: runnable once a slot is free."""
        return self in (TaskStatus.QUEUED, TaskStatus.RETRYING)

    def can_become(self, target: TaskStatus) -> bool:
        return target in _ALLOWED[self]


_TERMINAL = frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED})
_ALLOWED: dict[TaskStatus, frozenset[TaskStatus]] = {
    TaskStatus.QUEUED: frozenset({TaskStatus.RUNNING, TaskStatus.CANCELLED}),
    # RUNNING -> QUEUED: the server shut down cleanly and handed the task back to the queue.
    TaskStatus.RUNNING: frozenset(
        {
            TaskStatus.COMPLETED,
            TaskStatus.FAILED,
            TaskStatus.CANCELLED,
            TaskStatus.RETRYING,
            TaskStatus.QUEUED,
        }
    ),
    TaskStatus.RETRYING: frozenset({TaskStatus.RUNNING, TaskStatus.CANCELLED, TaskStatus.FAILED}),
    TaskStatus.COMPLETED: frozenset(),
    # FAILED/CANCELLED -> QUEUED: retry_task, on request only (the attempt history is kept).
    TaskStatus.FAILED: frozenset({TaskStatus.QUEUED}),
    TaskStatus.CANCELLED: frozenset({TaskStatus.QUEUED}),
}


class ErrorKind(StrEnum):
    """Why a task failed, so an agent can decide what to do next."""

    OUT_OF_MEMORY = "out_of_memory"  # the worker ran out of RAM (or GPU memory)
    DISK_FULL = "disk_full"  # no space left while writing checkpoints or artifacts
    DATA_ERROR = "data_error"  # the data or the parameters cannot be trained on; fix the input
    CUDA_ERROR = "cuda_error"  # the GPU driver or runtime failed
    DIVERGENCE = "divergence"  # the loss became NaN or exploded
    TIMEOUT = "timeout"  # the task ran past its time limit
    WORKER_LOST = "worker_lost"  # the worker process died without saying why (killed, crashed)
    SCRIPT_ERROR = "script_error"  # a script task's script failed (exit code, signal, missing output)
    INTERNAL = "internal"  # a bug in mcp-trainer; the message says where
    DEPENDENCY_FAILED = "dependency_failed"  # a task it depends on failed or was cancelled; it never ran
    CONFLICT = "conflict"  # what the task works on is in use (a task a cleanup names runs again); retry later

    def is_retryable(self) -> bool:
        """Whether another attempt may succeed as it is (outcome.py says how each kind is retried)."""
        return self in _RETRYABLE


_RETRYABLE = frozenset(
    {ErrorKind.WORKER_LOST, ErrorKind.OUT_OF_MEMORY, ErrorKind.DISK_FULL, ErrorKind.CUDA_ERROR}
)


class Severity(StrEnum):
    """How urgent an alert is."""

    INFO = "info"  # worth knowing; nothing to do yet
    WARNING = "warning"  # likely to end badly unless someone looks
    CRITICAL = "critical"  # going wrong now

    @property
    def rank(self) -> int:
        return list(Severity).index(self)


class Alert(BaseModel):
    """Something about a running task (or the machine) that a person or an agent should look at."""

    kind: str = Field(description="stalled, loss_nan, loss_spike, memory_high, overdue, disk_filling, ...")
    severity: Severity
    message: Annotated[str, _clipped(300)]
    since: float = Field(description="Unix time the condition was first seen")
    task_id: str | None = None  # None: about the machine


class TaskError(BaseModel):
    """A classified, actionable error."""

    kind: ErrorKind
    message: Annotated[str, _clipped(2000)]  # an exception's text can be any length
    hint: Annotated[str, _clipped(1000)] | None = None


class TrainingProgress(BaseModel):
    """Step-level progress of a fine-tune."""

    epoch: float = Field(description="epochs done, fractional")
    n_epochs: float
    step: int = Field(description="optimizer steps done")
    total_steps: int
    loss: float | None = None
    learning_rate: float | None = None
    samples_per_s: float | None = None
    tokens_per_s: float | None = None
    eval_loss: float | None = None  # of the latest evaluation (at the end: of the weights kept)
    eval_metric: float | None = None  # the watched metric, likewise
    best_eval_metric: float | None = None
    best_step: int | None = None  # the step of the best evaluation
    kept_step: int | None = None  # at the end: the step whose weights the model keeps
    micro_batch: int | None = Field(None, description="examples per forward pass (halved on out-of-memory)")
    gpu_memory_mb: float | None = Field(None, description="peak GPU memory of this attempt")
    device: str | None = None


class Progress(BaseModel):
    """Numeric progress of a running task, as reported by its worker."""

    model_config = ConfigDict(extra="forbid")

    percent: Annotated[float, Field(ge=0, le=100)] = 0.0
    # queued, starting, loading_data, searching, training, evaluating, reporting, saving, done
    phase: str = "queued"
    trial: int | None = None  # trials finished so far
    n_trials: int | None = None
    best_score: float | None = None
    best_params: dict[str, Any] | None = None
    eta_s: float | None = None
    message: str | None = None
    training: TrainingProgress | None = None  # fine-tunes only
    metrics: dict[str, float] = Field(default_factory=dict)  # the latest a script reported (script tasks)
    warnings: list[str] = Field(default_factory=list)  # what went wrong or was left out in this attempt
    updated_at: float | None = None


class TaskResult(BaseModel):
    """What a completed task produced: a model (training, a script that declared an output directory),
    and named outputs that a later pipeline stage may refer to (`${stage.name}`)."""

    model_id: str | None = None  # None: the task made no model (preprocess, evaluate, cleanup)
    model_dir: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    cv_score: float | None = None
    best_params: dict[str, Any] = Field(default_factory=dict)
    n_trials_completed: int | None = None
    deleted_at: float | None = None  # delete_model removed the model since
    outputs: dict[str, Any] = Field(default_factory=dict)  # e.g. output_path of a preprocess task


class Transition(BaseModel):
    status: TaskStatus
    at: float
    note: str | None = None


class TaskRecord(BaseModel):
    """One task as stored in `queue/<task_id>.json`."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = 1
    task_id: str
    name: str | None = None
    user_id: str | None = None
    priority: Priority = Priority.NORMAL
    spec: TaskSpec
    status: TaskStatus = TaskStatus.QUEUED
    created_at: float = Field(default_factory=time.time)
    created_ns: int = Field(default_factory=time.time_ns)
    started_at: float | None = None  # start of the current (or last) attempt
    finished_at: float | None = None
    history: list[Transition] = Field(default_factory=list)
    attempts: int = 0
    max_attempts: int = 3
    attempt_budget: int = 3  # the max_attempts asked for at submit: what a retry_task grants again
    recoveries: int = 0  # times it was running when its owner died (not counted as attempts)
    idempotency_key: str | None = None  # a second submit with it returns this task (store.py)
    resources: ResourceRequest | None = None  # what it claims while running (None: before requests existed)
    grant: Grant | None = None  # what the current (or last) attempt was given
    alerts: list[Alert] = Field(default_factory=list)  # of the current attempt, as its owner last saw
    waiting_for: str | None = None  # why a waiting task has not started, as the scheduler last saw it
    retry_plan: str | None = None  # how the next attempt differs and why (shown while retrying)
    overrides: dict[str, Any] = Field(default_factory=dict)  # spec fields a retry changed (out of memory)
    disk_waits: int = 0  # attempts ended by a full disk: they wait for space and do not count
    next_attempt_at: float | None = None
    cancel_requested: bool = False
    finish_requested: bool = False  # stop_training_task: end the work now, keep the best so far
    progress: Progress = Field(default_factory=Progress)
    error: TaskError | None = None
    result: TaskResult | None = None
    worker_pid: int | None = None
    worker_started_at: float | None = None  # the worker's create_time, to tell a reused pid apart
    owner_pid: int | None = None
    # Tasks that must complete before this one starts (engine/dependencies.py), and what to do when one
    # of them fails or is cancelled instead: "cancel" this task too, or "run" it anyway.
    depends_on: list[str] = Field(default_factory=list)
    on_dependency_failure: DependencyPolicy = "cancel"
    pipeline_id: str | None = None  # the pipeline whose stage this task runs, and the stage's name
    stage: str | None = None

    @property
    def task_type(self) -> str:
        return self.spec.task_type

    def transition(self, target: TaskStatus, note: str | None = None, *, now: float | None = None) -> None:
        """Move to `target`, recording when; raises ValueError for a move the lifecycle forbids."""
        if not self.status.can_become(target):
            raise ValueError(f"task {self.task_id}: {self.status.value} cannot become {target.value}")
        at = time.time() if now is None else now
        self.status = target
        self.history.append(Transition(status=target, at=at, note=note))
        if len(self.history) > MAX_HISTORY:  # retried again and again: keep the submission and the latest
            self.history = self.history[:1] + self.history[-(MAX_HISTORY - 1) :]
        if target is TaskStatus.RUNNING:
            self.started_at = at
            self.finished_at = None
        if target.is_terminal():
            self.finished_at = at
            self.worker_pid = None
        if target.is_waiting():
            self.worker_pid = None
            self.worker_started_at = None

    def sort_key_waiting(self) -> tuple[int, int, str]:
        """Order in which waiting tasks start: priority, then first come first served."""
        return (self.priority.rank, self.created_ns, self.task_id)
