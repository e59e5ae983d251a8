"""The order in which waiting tasks start: priority, then first come first served."""

from __future__ import annotations

from collections.abc import Iterable

from mcp_trainer.records import TaskRecord

__all__ = ["runnable_order"]


def runnable_order(records: Iterable[TaskRecord], now: float) -> list[TaskRecord]:
    """Waiting tasks that may start at `now`, in the order they should (a retry waits for its time)."""
    ready = [
        r
        for r in records
        if r.status.is_waiting() and (r.next_attempt_at is None or r.next_attempt_at <= now)
    ]
    return sorted(ready, key=TaskRecord.sort_key_waiting)
