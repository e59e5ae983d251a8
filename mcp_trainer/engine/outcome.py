"""What happens to a task's record when an attempt starts, ends, or is found orphaned.

Pure functions of a record (and what the scheduler saw), applied under the store's lock by
`TaskStore.update`: the lifecycle's rules in one place, testable without a process.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from mcp_trainer.engine.retries import retry_or_fail
from mcp_trainer.errors import InvalidStateError
from mcp_trainer.records import Alert, ErrorKind, Progress, TaskError, TaskRecord, TaskResult, TaskStatus
from mcp_trainer.specs.resources import Grant

__all__ = [
    "Ending",
    "cancel_for_dependency",
    "claim",
    "finish",
    "note_alerts",
    "note_waiting",
    "note_worker",
    "progress_or_none",
    "requeue_on_request",
    "requeue_orphan",
    "save_progress",
]

log = logging.getLogger(__name__)
MAX_RECOVERIES = 5


@dataclass(frozen=True)
class Ending:
    """How an attempt ended, as the scheduler saw it."""

    kind: str | None  # "result", "error", "stopped", or None when the worker sent no outcome
    payload: dict[str, Any]
    progress: Progress | None  # the latest progress, which may be newer than the stored one
    cancelled: bool  # a stop was asked for by a cancel
    shutting_down: bool  # the owner is shutting down and hands its tasks back
    exit_description: str  # how the worker ended: "exited with code 1", ...


def claim(r: TaskRecord, grant: Grant | None = None) -> bool:
    """Start the next attempt of a waiting task with what it was granted; False (and no change) if it is
    no longer runnable."""
    if not r.status.is_waiting() or r.cancel_requested:
        return False
    r.transition(TaskStatus.RUNNING, f"attempt {r.attempts + 1}")
    r.attempts += 1
    r.owner_pid = os.getpid()
    r.next_attempt_at = None
    r.grant = grant
    r.waiting_for = None
    r.retry_plan = None
    r.alerts = []
    r.progress = Progress(phase="starting", percent=r.progress.percent if r.attempts > 1 else 0.0)
    return True


def note_waiting(r: TaskRecord, reason: str) -> None:
    """Say why a waiting task has not started (only while it waits)."""
    if r.status.is_waiting():
        r.waiting_for = reason


def cancel_for_dependency(r: TaskRecord, reason: str) -> None:
    """Cancel a waiting task because a task it depends on failed or was cancelled (dependencies.py): it
    never runs, and its error says which task and what to do."""
    if not r.status.is_waiting():
        return
    r.transition(TaskStatus.CANCELLED, f"cancelled: {reason}")
    r.waiting_for = None
    r.error = TaskError(
        kind=ErrorKind.DEPENDENCY_FAILED,
        message=f"Cancelled before it started: {reason}.",
        hint="Retry that task (retry_task), then this one; or submit with on_dependency_failure='run'.",
    )


def note_alerts(r: TaskRecord, alerts: list[Alert]) -> None:
    """Keep the current attempt's alerts (only while it runs)."""
    if r.status is TaskStatus.RUNNING:
        r.alerts = alerts


def note_worker(r: TaskRecord, pid: int | None, started_at: float | None) -> None:
    if r.status is TaskStatus.RUNNING:
        r.worker_pid = pid
        r.worker_started_at = started_at


def save_progress(r: TaskRecord, progress: Progress) -> None:
    if r.status is TaskStatus.RUNNING:
        r.progress = progress


def finish(r: TaskRecord, end: Ending) -> None:
    """Record the end of an attempt: completed, cancelled, handed back, retried or failed."""
    if r.status is not TaskStatus.RUNNING:  # another process ended it meanwhile; terminal is final
        return
    if end.progress is not None:
        r.progress = end.progress
    if r.cancel_requested or end.cancelled:
        # A requested cancel wins over a result that arrives with it: that model is not kept (the
        # scheduler removes it), so a cancelled task never leaves a usable model behind.
        r.cancel_requested = True
        saved = " (the model it had just saved was not kept)" if end.kind == "result" else ""
        r.transition(TaskStatus.CANCELLED, "cancelled on request" + saved)
    elif end.kind == "result":
        r.result = TaskResult.model_validate(end.payload)
        r.error = None
        r.progress = r.progress.model_copy(update={"percent": 100.0, "phase": "done", "eta_s": 0.0})
        r.transition(TaskStatus.COMPLETED)
    elif end.kind == "stopped" and r.finish_requested:
        r.transition(TaskStatus.CANCELLED, "stopped on request before it had a result to keep")
    elif end.shutting_down:
        r.transition(TaskStatus.QUEUED, "the server shut down; the task waits for the next start")
        r.attempts = max(0, r.attempts - 1)  # a clean hand-back is not a failed attempt
    elif end.kind == "error":
        r.error = TaskError.model_validate(end.payload)
        retry_or_fail(r, r.error.kind.value)
    else:
        r.error = TaskError(
            kind=ErrorKind.WORKER_LOST,
            message=f"The worker process {end.exit_description} without reporting a result "
            f"(attempt {r.attempts}).",
            hint="Often the system ran out of memory; the task is retried while attempts remain.",
        )
        retry_or_fail(r, "worker lost")


def requeue_orphan(r: TaskRecord) -> None:
    """A task left running by an owner that died: cancelled if that was asked for, else run again."""
    if r.status is not TaskStatus.RUNNING:
        return
    if r.cancel_requested:
        r.transition(TaskStatus.CANCELLED, "cancelled while its server was down")
        return
    r.recoveries += 1
    if r.recoveries > MAX_RECOVERIES:
        r.error = TaskError(
            kind=ErrorKind.WORKER_LOST,
            message=f"The server stopped {r.recoveries} times while this task was running.",
            hint="It is not run again: it may be what stops the server. Check its log, then submit it again.",
        )
        r.transition(TaskStatus.FAILED, "recovered too many times")
        return
    r.error = TaskError(
        kind=ErrorKind.WORKER_LOST,
        message=f"The server stopped while attempt {r.attempts} was running.",
        hint="It is retried automatically; a search resumes with its finished trials.",
    )
    # The server's death is not the task's fault: it runs again whatever its attempt count, up to
    # MAX_RECOVERIES times (a task that kills its server every time would loop forever).
    r.next_attempt_at = time.time()
    r.transition(TaskStatus.RETRYING, "server restarted")


def progress_or_none(payload: dict[str, Any]) -> Progress | None:
    """A worker's progress report; a malformed one is logged and dropped, never fatal to the scheduler."""
    try:
        return Progress.model_validate(payload)
    except ValidationError as exc:
        log.warning("ignoring a malformed progress report: %s", exc)
        return None


def requeue_on_request(r: TaskRecord) -> None:
    """retry_task: a failed or cancelled task waits again with a fresh budget of attempts; its history,
    attempt count and work folder (a search's finished trials) are kept."""
    if r.status not in (TaskStatus.FAILED, TaskStatus.CANCELLED):
        hint = (
            "Submit it again to train a new model." if r.status is TaskStatus.COMPLETED else "Nothing to do."
        )
        raise InvalidStateError(
            f"Task {r.task_id} is {r.status.value}; only failed or cancelled tasks can be retried.", hint
        )
    r.max_attempts = r.attempts + r.attempt_budget
    r.error = None
    r.cancel_requested = r.finish_requested = False
    r.next_attempt_at = r.retry_plan = None
    r.recoveries = r.disk_waits = 0
    r.finished_at = None
    r.transition(TaskStatus.QUEUED, "retried on request")
