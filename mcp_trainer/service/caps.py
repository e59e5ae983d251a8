"""Caps on what waits in the queue: a submit past one is refused in words, and nothing is written.

The check runs under the queue-wide lock, with the task files of every process sharing the queue read
afresh (`TaskStore.create(record, admit)`), so that concurrent submits, from this process or others,
never take the queue past a cap. A waiting task is one queued or retrying. A retry with the
`idempotency_key` of a task that exists gets that task back, full queue or not: it adds nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from mcp_trainer.errors import InvalidInputError, InvalidStateError
from mcp_trainer.records import TaskRecord

__all__ = ["DEFAULT_MAX_QUEUED", "QueueCaps"]

DEFAULT_MAX_QUEUED = 1000
_HINT = (
    "Submit again once some have started, or cancel waiting tasks that are no longer needed "
    "(list_training_tasks with status='queued' lists them)."
)


@dataclass(frozen=True)
class QueueCaps:
    """At most `max_queued` waiting tasks in all, and `max_queued_per_user` per `user_id` (None: no cap;
    tasks without a user_id count only towards the first)."""

    max_queued: int | None = DEFAULT_MAX_QUEUED
    max_queued_per_user: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_queued", "max_queued_per_user"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise InvalidInputError(f"{name} must be a whole number of at least 1, or None for no cap.")

    def admit(self, record: TaskRecord, waiting: list[TaskRecord]) -> None:
        """Refuse `record` (InvalidStateError) when queueing it would pass a cap; `waiting` is every
        queued or retrying task of the queue, as of now."""
        if self.max_queued is not None and len(waiting) >= self.max_queued:
            raise InvalidStateError(
                f"The queue is full: {_tasks_wait(len(waiting))}, and this server queues at most "
                f"{self.max_queued} (max_queued); nothing was queued.",
                _HINT,
            )
        user = record.user_id
        if self.max_queued_per_user is not None and user is not None:
            mine = sum(r.user_id == user for r in waiting)
            if mine >= self.max_queued_per_user:
                raise InvalidStateError(
                    f"{_tasks_wait(mine)} for user_id {user!r}, and this server queues at most "
                    f"{self.max_queued_per_user} per user (max_queued_per_user); nothing was queued.",
                    _HINT,
                )


def _tasks_wait(n: int) -> str:
    return "1 task waits" if n == 1 else f"{n} tasks wait"
