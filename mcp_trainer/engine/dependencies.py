"""A waiting task's dependencies (`depends_on`): whether it may start, waits (and for which tasks), or is
cancelled because one of them failed or was cancelled (unless it runs anyway, `on_dependency_failure`).

Pure functions of a record and a way to read other tasks' statuses, so that the scheduler (which acts on
the verdict) and the service (which counts queue positions) agree, and a test needs no process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from mcp_trainer.records import TaskRecord, TaskStatus

__all__ = ["StatusOf", "Verdict", "startable", "verdict"]

# A task's status by id, None when no such task exists any more (its file was removed by hand).
StatusOf = Callable[[str], TaskStatus | None]


@dataclass(frozen=True)
class Verdict:
    """`ready`: every dependency completed (or the task runs anyway); otherwise `cancel` says why the task
    must be cancelled, or `wait` why it waits."""

    ready: bool
    wait: str | None = None
    cancel: str | None = None


READY = Verdict(ready=True)


def verdict(record: TaskRecord, status_of: StatusOf) -> Verdict:
    """What `record`'s dependencies allow now."""
    if not record.depends_on:
        return READY
    pending: list[str] = []
    for parent in record.depends_on:
        status = status_of(parent)
        if status is TaskStatus.COMPLETED:
            continue
        if status is None or status in (TaskStatus.FAILED, TaskStatus.CANCELLED):
            if record.on_dependency_failure == "run":
                continue
            what = "no longer exists" if status is None else f"was {status.value}"
            return Verdict(ready=False, cancel=f"task {parent}, which it depends on, {what}")
        pending.append(f"{parent} ({status.value})")
    if not pending:
        return READY
    shown = ", ".join(pending[:3]) + (f" and {len(pending) - 3} more" if len(pending) > 3 else "")
    return Verdict(ready=False, wait=f"waiting for task{'s' if len(pending) > 1 else ''} {shown} to complete")


def startable(records: Iterable[TaskRecord], status_of: StatusOf) -> list[TaskRecord]:
    """The records whose dependencies allow them to start now (those without any, and the rest ready)."""
    return [r for r in records if not r.depends_on or verdict(r, status_of).ready]
