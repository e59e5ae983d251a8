"""Compact, numeric views of tasks and of the queue: what the API and the MCP tools return."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

from mcp_trainer.models import Priority, TaskError, TaskRecord, TaskStatus, TrainingProgress
from mcp_trainer.system import MachineStatus

__all__ = [
    "ModelInfo",
    "ModelPage",
    "ModelReport",
    "ModelSummary",
    "Predictions",
    "QueueStatus",
    "ReportPlot",
    "TaskPage",
    "TaskStatusView",
    "iso",
]


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
    queue_position: int | None = Field(None, description="1 = next to start; only while waiting")
    progress: float = Field(description="overall percent, 0-100")
    phase: str
    trial: int | None = None
    n_trials: int | None = None
    best_score: float | None = None
    best_params: dict[str, Any] | None = None
    elapsed_s: float | None = None
    eta_s: float | None = None
    training: TrainingProgress | None = Field(
        None, description="fine-tunes: epoch, step of total, loss, learning rate, throughput, GPU memory"
    )
    attempts: int
    max_attempts: int
    cancel_requested: bool
    created_at: str
    started_at: str | None
    finished_at: str | None
    model_id: str | None = None
    metrics: dict[str, float] | None = None
    cv_score: float | None = None
    error: TaskError | None = None
    next_attempt_at: str | None = None

    @classmethod
    def of(
        cls, r: TaskRecord, *, queue_position: int | None = None, now: float | None = None
    ) -> TaskStatusView:
        now = time.time() if now is None else now
        p = r.progress
        elapsed = None
        if r.started_at is not None and not r.status.is_waiting():
            elapsed = round((r.finished_at or now) - r.started_at, 2)
        shows_error = r.status in (TaskStatus.FAILED, TaskStatus.RETRYING)
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
            progress=round(p.percent, 2),
            phase=phase,
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
            created_at=iso(r.created_at) or "",
            started_at=iso(r.started_at),
            finished_at=iso(r.finished_at),
            model_id=r.result.model_id if r.result else None,
            metrics=r.result.metrics if r.result else None,
            cv_score=r.result.cv_score if r.result else None,
            error=r.error if shows_error else None,
            next_attempt_at=iso(r.next_attempt_at) if r.status is TaskStatus.RETRYING else None,
        )


class TaskPage(BaseModel):
    """One page of tasks, newest first."""

    tasks: list[TaskStatusView]
    total: int = Field(description="tasks matching the filters, over all pages")
    next_cursor: str | None = Field(
        None, description="pass it as `cursor` for the next page; null on the last"
    )


class QueueStatus(BaseModel):
    """True counts from the task files, the concurrency limit, and the machine's load."""

    running: int
    queued: int = Field(description="queued plus retrying: tasks waiting for a slot")
    concurrency_limit: int
    counts: dict[str, int] = Field(description="tasks per status")
    running_tasks: list[str]
    next_up: list[str] = Field(description="the next waiting tasks, in start order")
    owner_pid: int | None = Field(description="pid of the server process that executes tasks")
    this_process_executes: bool
    queue_dir: str
    models_dir: str
    machine: MachineStatus


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
    reports: list[str]

    @classmethod
    def full(cls, meta: dict[str, Any], reports: list[str]) -> ModelInfo:
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
            reports=reports,
        )


class Generation(BaseModel):
    model_id: str
    prompt: str
    completion: str = Field(description="the generated continuation (without the prompt)")
    n_new_tokens: int
    finished: bool = Field(description="true when the model ended the text itself before max_new_tokens")


class Predictions(BaseModel):
    model_id: str
    n_rows: int
    predictions: list[Any]
    classes: list[Any] | None = Field(None, description="class labels, in the order of each probability row")
    probabilities: list[list[float]] | None = Field(
        None, description="per-class probabilities, for classifiers that estimate them"
    )


class ReportPlot(BaseModel):
    """One report plot of a model, and whether this answer carries its image."""

    name: str = Field(description="pass it in `plots` to ask for this image")
    file: str = Field(description="the PNG file on the server's machine")
    bytes: int
    description: str
    included: bool = Field(description="whether this answer carries the image")


class ModelReport(BaseModel):
    """A model's readable summary and its report plots (the images travel as MCP image content)."""

    model_id: str
    summary: str = Field(description="reports/summary.md: task, data, best parameters, metrics, plots")
    plots: list[ReportPlot] = Field(description="the plots this model has, in report order")
    not_drawn: dict[str, str] = Field(description="plots this model lacks, with the reason")
    note: str | None = Field(None, description="what was left out of this answer and how to ask for it")
