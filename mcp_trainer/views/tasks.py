"""Compact, numeric views of tasks and of the queue: what the API and the MCP tools return."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import BaseModel, Field

from mcp_trainer.machine import MachineStatus
from mcp_trainer.records import (
    Alert,
    ErrorKind,
    Priority,
    TaskError,
    TaskRecord,
    TaskStatus,
    TrainingProgress,
)
from mcp_trainer.specs.resources import Grant, ResourceRequest

__all__ = ["AlertsView", "MetricPoint", "QueueStatus", "TaskListItem", "TaskPage", "TaskStatusView", "iso"]


def iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


class TaskStatusView(BaseModel):
    """A task as an agent reads it: status, numeric progress, and the result or the error."""

    task_id: str
    name: str | None
    task_type: str
    user_id: str | None
    priority: Priority
    status: TaskStatus
    queue_position: int | None = Field(
        None, description="1 = next to start when a slot frees; null while waiting for a slot free now"
    )
    waiting_for: str | None = Field(None, description="why a waiting task has not started yet")
    depends_on: list[str] = Field(
        default_factory=list, description="tasks that must complete before it starts"
    )
    pipeline_id: str | None = Field(None, description="the pipeline this task is a stage of")
    stage: str | None = Field(None, description="its stage's name in that pipeline")
    resources: ResourceRequest | None = Field(None, description="what it claims: cores, memory GB, GPUs")
    granted: Grant | None = Field(None, description="what its current or last attempt was given")
    progress: float = Field(description="overall percent, 0-100")
    phase: str
    message: str | None = Field(None, description="while running: what it is doing (a script's own words)")
    trial: int | None = None
    n_trials: int | None = None
    best_score: float | None = None
    best_params: dict[str, Any] | None = None
    elapsed_s: float | None = Field(None, description="seconds since it first started, over every attempt")
    eta_s: float | None = None
    training: TrainingProgress | None = Field(
        None, description="fine-tunes: epoch, step of total, loss, learning rate, throughput, GPU memory"
    )
    attempts: int
    max_attempts: int
    cancel_requested: bool
    stop_requested: bool = Field(description="stop_training_task asked it to finish with the best so far")
    warnings: list[str] = Field(
        default_factory=list,
        description="what went wrong or was left out (a process died, a trial was ended)",
    )
    created_at: str
    started_at: str | None
    finished_at: str | None
    model_id: str | None = None
    model_deleted: bool = Field(False, description="delete_model removed this task's model since")
    metrics: dict[str, float] | None = Field(
        None, description="held-out metrics once completed; before that, the latest a script reported"
    )
    cv_score: float | None = None
    outputs: dict[str, Any] | None = Field(
        None,
        description="what a completed task made for later tasks: output_path, best_model_id, exit_code, ...",
    )
    error: TaskError | None = None
    next_attempt_at: str | None = None
    retry_plan: str | None = Field(None, description="while retrying: when and how the next attempt runs")
    alerts: list[Alert] = Field(default_factory=list, description="while running: stalled, loss, memory")
    archived: bool = Field(False, description="ended long ago: read from queue/archive/, its log removed")

    @classmethod
    def of(
        cls,
        r: TaskRecord,
        *,
        queue_position: int | None = None,
        now: float | None = None,
        archived: bool = False,
    ) -> TaskStatusView:
        now = time.time() if now is None else now
        p = r.progress
        elapsed = None
        first_start = next((t.at for t in r.history if t.status is TaskStatus.RUNNING), r.started_at)
        if first_start is not None and not r.status.is_waiting():
            # Since the task first started, over every attempt and hand-over between servers.
            elapsed = round((r.finished_at or now) - first_start, 2)
        shows_error = r.status in (TaskStatus.FAILED, TaskStatus.RETRYING) or (
            r.status is TaskStatus.CANCELLED
            and r.error is not None
            and r.error.kind is ErrorKind.DEPENDENCY_FAILED
        )
        if r.status is TaskStatus.RUNNING:
            phase = p.phase
        elif r.status is TaskStatus.COMPLETED:
            phase = "done"
        else:
            phase = r.status.value
        return cls(
            task_id=r.task_id,
            name=r.name,
            task_type=r.task_type,
            user_id=r.user_id,
            priority=r.priority,
            status=r.status,
            queue_position=queue_position if r.status.is_waiting() else None,
            waiting_for=r.waiting_for if r.status.is_waiting() else None,
            depends_on=r.depends_on,
            pipeline_id=r.pipeline_id,
            stage=r.stage,
            resources=r.resources,
            granted=r.grant if r.status is not TaskStatus.QUEUED or r.attempts else None,
            progress=round(p.percent, 2),
            phase=phase,
            message=p.message if r.status is TaskStatus.RUNNING else None,
            trial=p.trial,
            n_trials=p.n_trials,
            best_score=p.best_score,
            best_params=p.best_params,
            elapsed_s=elapsed,
            eta_s=p.eta_s if r.status is TaskStatus.RUNNING else None,
            training=p.training,
            attempts=r.attempts,
            max_attempts=r.max_attempts,
            cancel_requested=r.cancel_requested,
            stop_requested=r.finish_requested,
            warnings=p.warnings,
            created_at=iso(r.created_at) or "",
            started_at=iso(r.started_at),
            finished_at=iso(r.finished_at),
            model_id=r.result.model_id if r.result else None,
            model_deleted=r.result is not None and r.result.deleted_at is not None,
            metrics=r.result.metrics if r.result else (p.metrics or None),
            cv_score=r.result.cv_score if r.result else None,
            outputs=(r.result.outputs or None) if r.result else None,
            error=r.error if shows_error else None,
            next_attempt_at=iso(r.next_attempt_at) if r.status is TaskStatus.RETRYING else None,
            retry_plan=r.retry_plan if r.status is TaskStatus.RETRYING else None,
            alerts=r.alerts if r.status is TaskStatus.RUNNING else [],
            archived=archived,
        )


class TaskListItem(BaseModel):
    """A task in a listing: what it is, where it stands, its model; get_task_status has the rest."""

    task_id: str
    name: str | None
    task_type: str
    user_id: str | None
    status: TaskStatus
    progress: float = Field(description="overall percent, 0-100")
    phase: str
    trial: int | None = None
    n_trials: int | None = None
    best_score: float | None = None
    queue_position: int | None = None
    created_at: str
    started_at: str | None
    finished_at: str | None
    model_id: str | None = None
    error_kind: str | None = Field(None, description="failed or retrying: the kind of error")
    alerts: int = Field(0, description="alerts of a running task (get_task_status says which)")
    archived: bool = False

    @classmethod
    def of(cls, view: TaskStatusView) -> TaskListItem:
        return cls(
            **view.model_dump(include=set(cls.model_fields) - {"error_kind", "alerts"}),
            error_kind=view.error.kind.value if view.error else None,
            alerts=len(view.alerts),
        )

    @classmethod
    def of_summary(cls, s: Summarized, *, queue_position: int | None = None) -> TaskListItem:
        """The same item as `of(TaskStatusView.of(record, queue_position=...))`, from the store's summary
        of the record (engine/summary.py) instead of the record: no task file is read."""
        status = s.status
        if status is TaskStatus.RUNNING:
            phase = s.phase
        elif status is TaskStatus.COMPLETED:
            phase = "done"
        else:
            phase = status.value
        shows_error = status in (TaskStatus.FAILED, TaskStatus.RETRYING)
        return cls(
            task_id=s.task_id,
            name=s.name,
            task_type=s.task_type,
            user_id=s.user_id,
            status=status,
            progress=round(s.percent, 2),
            phase=phase,
            trial=s.trial,
            n_trials=s.n_trials,
            best_score=s.best_score,
            queue_position=queue_position if status.is_waiting() else None,
            created_at=iso(s.created_at) or "",
            started_at=iso(s.started_at),
            finished_at=iso(s.finished_at),
            model_id=s.model_id,
            error_kind=s.error_kind.value if shows_error and s.error_kind is not None else None,
            alerts=s.alerts if status is TaskStatus.RUNNING else 0,
        )


class Summarized(Protocol):
    """What a list item needs of a task (the store's TaskSummary has it)."""

    @property
    def task_id(self) -> str: ...
    @property
    def name(self) -> str | None: ...
    @property
    def task_type(self) -> str: ...
    @property
    def user_id(self) -> str | None: ...
    @property
    def status(self) -> TaskStatus: ...
    @property
    def percent(self) -> float: ...
    @property
    def phase(self) -> str: ...
    @property
    def trial(self) -> int | None: ...
    @property
    def n_trials(self) -> int | None: ...
    @property
    def best_score(self) -> float | None: ...
    @property
    def created_at(self) -> float: ...
    @property
    def started_at(self) -> float | None: ...
    @property
    def finished_at(self) -> float | None: ...
    @property
    def model_id(self) -> str | None: ...
    @property
    def error_kind(self) -> ErrorKind | None: ...
    @property
    def alerts(self) -> int: ...


class TaskPage(BaseModel):
    """One page of tasks, newest first."""

    tasks: list[TaskListItem]
    total: int = Field(description="tasks matching the filters, over all pages")
    next_cursor: str | None = Field(
        None, description="pass it as `cursor` for the next page; null on the last"
    )


class Claimed(BaseModel):
    """What running tasks hold of the machine (their grants), beside what it has."""

    cores: int
    cores_total: int
    memory_gb: float
    memory_total_gb: float
    gpus: dict[int, float] = Field(default_factory=dict, description="GPU index -> share held (1: whole)")


class QueueStatus(BaseModel):
    """True counts from the task files, the concurrency limit, and the machine's load."""

    running: int
    queued: int = Field(description="queued plus retrying: tasks waiting for a slot")
    concurrency_limit: int
    max_queued: int | None = Field(
        None, description="waiting tasks this server accepts at most; null: no cap"
    )
    max_queued_per_user: int | None = Field(None, description="and per user_id; null: no cap")
    counts: dict[str, int] = Field(description="tasks per status")
    running_tasks: list[str]
    next_up: list[str] = Field(description="the next waiting tasks, in start order")
    next_waiting_for: str | None = Field(None, description="why the first of them has not started")
    claimed: Claimed | None = None
    thresholds: dict[str, float] = Field(
        default_factory=dict, description="machine use (percent) past which nothing new starts"
    )
    owner_pid: int | None = Field(description="pid of the server process that executes tasks")
    owner_responding: bool | None = Field(
        description="whether that process said it was alive in the last few seconds (null: no owner)"
    )
    owner_silent_s: float | None = Field(description="seconds since it last said so")
    this_process_executes: bool
    queue_dir: str
    models_dir: str
    machine: MachineStatus
    alerts: list[Alert] = Field(default_factory=list, description="the machine's and running tasks' alerts")
    history: list[MetricPoint] = Field(
        default_factory=list, description="the machine's use over the last 10 minutes, oldest first"
    )


class MetricPoint(BaseModel):
    """The machine's use at one moment of its recent history (percent)."""

    ago_s: float
    cpu: float
    memory: float
    disk: float = Field(description="the fullest of the queue's and the models' disks")
    gpu: float | None = Field(None, description="mean GPU utilisation")
    gpu_memory: float | None = None


class AlertsView(BaseModel):
    """What to look at now: the machine's alerts and those of running tasks, most severe first."""

    alerts: list[Alert]
    counts: dict[str, int] = Field(description="alerts per severity")
    checked_at: str
