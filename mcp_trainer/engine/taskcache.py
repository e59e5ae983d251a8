"""The store's memory of its queue: a summary of every task file (summary.py), the full records of the
tasks that have not ended (waiting or running: few), and a bounded number of ended tasks' records read
recently. An ended task's full record is read from its file when asked for (store.py `get`).

Never touches the disk. Safe to use from several threads: one short lock guards every structure, and is
never held across I/O.
"""

from __future__ import annotations

import threading
from bisect import bisect_left, insort
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from mcp_trainer.engine.summary import Sig, TaskSummary, summarize
from mcp_trainer.records import TaskRecord, TaskStatus

__all__ = ["TaskCache"]

RECENT_RECORDS = 256  # ended tasks' full records kept after a read, least recently used dropped first
# Entries put at once past which the creation order is sorted anew rather than kept by insertion.
_RESORT = 64
Held = tuple[TaskSummary, TaskRecord | None]  # a summary, and its full record when there is one


def _key(s: TaskSummary) -> tuple[int, str]:
    return (s.created_ns, s.task_id)


class TaskCache:
    """Summaries of every task file as last seen, in creation order, with counts and indexes kept."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._summaries: dict[str, TaskSummary] = {}
        self._order: list[TaskSummary] = []  # oldest first: (created_ns, task_id)
        self._live: dict[str, TaskRecord] = {}  # not ended; each matches its summary's signature
        self._waiting: dict[str, TaskRecord] = {}  # the queued and retrying subset of _live
        self._recent: OrderedDict[str, tuple[Sig, TaskRecord]] = OrderedDict()
        self._counts = dict.fromkeys(TaskStatus, 0)
        self._keys: dict[str, str] = {}  # idempotency key -> task id
        self.version = 0  # bumped whenever a summary changes: derived views key their own caches on it
        self.changes = 0  # summaries set or dropped, ever (the index is saved when enough accrued)

    # -- changes -------------------------------------------------------------------------------------

    def put(self, sig: Sig, record: TaskRecord) -> None:
        """Hold `record`, read from (or written to) a file whose signature is `sig`."""
        with self._guard:
            old = self._summaries.get(record.task_id)
            if old is not None and old.sig == sig and record.status.is_terminal():
                self._remember(record.task_id, sig, record)  # an ended task read again: nothing changed
                return
        self.put_many([(summarize(record, sig), record)])

    def put_many(self, held: list[Held]) -> None:
        """Hold each summary (and its record, which a task that has not ended needs)."""
        if not held:
            return
        bulk = len(held) > _RESORT
        with self._guard:
            for summary, record in held:
                old = self._summaries.get(summary.task_id)
                if old is not None:
                    self._uncount(old)
                    if not bulk:
                        self._unorder(old)
                self._summaries[summary.task_id] = summary
                self._count(summary)
                if not bulk:
                    insort(self._order, summary, key=_key)
                self._hold(summary, record)
            if bulk:
                self._order = sorted(self._summaries.values(), key=_key)
            self.version += 1
            self.changes += len(held)

    def drop(self, task_ids: Iterable[str]) -> None:
        """Forget these tasks (their files are gone)."""
        with self._guard:
            dropped = 0
            for task_id in task_ids:
                summary = self._summaries.pop(task_id, None)
                if summary is None:
                    continue
                self._uncount(summary)
                self._unorder(summary)
                self._live.pop(task_id, None)
                self._waiting.pop(task_id, None)
                self._recent.pop(task_id, None)
                dropped += 1
            if dropped:
                self.version += 1
                self.changes += dropped

    def _hold(self, summary: TaskSummary, record: TaskRecord | None) -> None:
        task_id = summary.task_id
        if record is None or summary.status.is_terminal():
            self._live.pop(task_id, None)
            self._waiting.pop(task_id, None)
            if record is not None:
                self._remember(task_id, summary.sig, record)
            return
        self._recent.pop(task_id, None)
        self._live[task_id] = record
        if summary.status.is_waiting():
            self._waiting[task_id] = record
        else:
            self._waiting.pop(task_id, None)

    def _remember(self, task_id: str, sig: Sig, record: TaskRecord) -> None:
        self._recent[task_id] = (sig, record)
        self._recent.move_to_end(task_id)
        while len(self._recent) > RECENT_RECORDS:
            self._recent.popitem(last=False)

    def _count(self, s: TaskSummary) -> None:
        self._counts[s.status] += 1
        if s.idempotency_key is not None:
            self._keys.setdefault(s.idempotency_key, s.task_id)

    def _uncount(self, s: TaskSummary) -> None:
        self._counts[s.status] -= 1
        if s.idempotency_key is not None and self._keys.get(s.idempotency_key) == s.task_id:
            del self._keys[s.idempotency_key]

    def _unorder(self, s: TaskSummary) -> None:
        i = bisect_left(self._order, _key(s), key=_key)
        while i < len(self._order) and _key(self._order[i]) == _key(s):
            if self._order[i] is s:
                del self._order[i]
                return
            i += 1

    # -- reads ---------------------------------------------------------------------------------------

    def record(self, task_id: str, sig: Sig) -> TaskRecord | None:
        """The full record of `task_id` held for a file whose signature is `sig`, if any."""
        with self._guard:
            summary = self._summaries.get(task_id)
            if summary is not None and summary.sig == sig and task_id in self._live:
                return self._live[task_id]
            recent = self._recent.get(task_id)
            if recent is not None and recent[0] == sig:
                self._recent.move_to_end(task_id)
                return recent[1]
        return None

    def summary(self, task_id: str) -> TaskSummary | None:
        with self._guard:
            return self._summaries.get(task_id)

    def ids(self) -> Mapping[str, TaskSummary]:
        """A live, read-only view of the summaries by task id (membership tests need no copy)."""
        return MappingProxyType(self._summaries)

    def ordered(self) -> list[TaskSummary]:
        """Every summary, oldest first by (created_ns, task_id)."""
        with self._guard:
            return list(self._order)

    def live(self) -> list[TaskRecord]:
        """The full records of the tasks that have not ended (waiting or running)."""
        with self._guard:
            return list(self._live.values())

    def live_record(self, task_id: str) -> TaskRecord | None:
        with self._guard:
            return self._live.get(task_id)

    def waiting(self) -> list[TaskRecord]:
        with self._guard:
            return list(self._waiting.values())

    def counts(self) -> dict[TaskStatus, int]:
        with self._guard:
            return dict(self._counts)

    def by_key(self, idempotency_key: str) -> str | None:
        """The task that holds `idempotency_key`, if any."""
        with self._guard:
            return self._keys.get(idempotency_key)

    def recent_ids(self) -> list[str]:
        """The ended tasks whose full records are held (oldest read first)."""
        with self._guard:
            return list(self._recent)
