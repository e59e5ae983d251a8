"""What the store keeps in memory of every task file, and its on-disk cache (`queue/.index/tasks.jsonl`).

A `TaskSummary` holds the few fields that listing, counting, caps, idempotency keys and maintenance need,
and the signature (inode, mtime_ns, size) of the file it was read from: a few hundred bytes against ~30 KB
for a parsed `TaskRecord`. The store keeps full records only of tasks that have not ended.

The index file is a cache of the summaries, so that a start-up with 100,000 task files reads one file and
stats the directory instead of parsing every task file. It is never trusted over the task files: an entry
counts only while its file's signature is unchanged (an inode alone is not enough: inodes are reused), and
a file that is missing, torn, from another version or not what this module writes is ignored whole (and
the store rebuilds it from the task files). Every entry is checked on its own against its file, so any
process may write the index at any time, by rename: the last one wins, and a stale one costs re-reads,
never a wrong answer. One header line, then one JSON array per task.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator
from functools import partial
from itertools import repeat
from operator import itemgetter
from pathlib import Path
from typing import Any, NamedTuple

from mcp_trainer.files import NotARegularFile, atomic_write, open_no_follow
from mcp_trainer.ids import all_task_ids
from mcp_trainer.records import ErrorKind, Priority, TaskRecord, TaskStatus
from mcp_trainer.version import __version__

__all__ = ["Sig", "TaskSummary", "read_index", "summarize", "write_index"]

log = logging.getLogger(__name__)
Sig = tuple[int, int, int]  # inode, mtime_ns, size

_FORMAT = 1  # bump when what a summary holds, or how it is derived from a record, changes
_MAX_INDEX_BYTES = 1 << 28  # ~250 bytes a task: room for a million
_MAX_LINE = 1 << 14  # a line is a few hundred bytes; a name and a key of 200 characters fit many times
_CHUNK = 5000  # lines parsed per json.loads (one call per line costs twice as much; all at once, memory)
_STATUSES = {s.value: s for s in TaskStatus}
_PRIORITIES = {p.value: p for p in Priority}
_KINDS = {k.value: k for k in ErrorKind}
_shared: dict[str, str] = {}  # one copy of the strings many summaries repeat (types, users, phases)


def _share(text: str) -> str:
    if len(_shared) > 10_000:  # many users or phases: keep one copy of the common ones only
        _shared.clear()
    return _shared.setdefault(text, text)


class TaskSummary(NamedTuple):
    """A task as the store indexes it (see the module's docstring): an index line's values, in order."""

    task_id: str
    ino: int  # the signature of the file it was read from (or written to): inode, mtime_ns, size
    mtime_ns: int
    size: int
    status: TaskStatus
    task_type: str
    name: str | None
    user_id: str | None
    priority: Priority
    created_at: float
    created_ns: int
    started_at: float | None
    finished_at: float | None
    attempts: int
    model_id: str | None
    error_kind: ErrorKind | None
    idempotency_key: str | None
    percent: float
    phase: str
    trial: int | None
    n_trials: int | None
    best_score: float | None
    alerts: int

    @property
    def sig(self) -> Sig:
        return (self.ino, self.mtime_ns, self.size)

    @property
    def key(self) -> tuple[int, str]:
        """Creation order: (created_ns, task_id)."""
        return (self.created_ns, self.task_id)

    @property
    def ended_at(self) -> float:
        """When the task ended (its creation time when the record lacks it), as archive.ended_at."""
        return self.finished_at if self.finished_at is not None else self.created_at


_FIELDS = TaskSummary._fields
_HEADER = {
    "index": "mcp-trainer task summaries",
    "format": _FORMAT,
    "version": __version__,
    "fields": _FIELDS,
}


def summarize(record: TaskRecord, sig: Sig) -> TaskSummary:
    """The summary of `record`, read from (or written to) a file whose signature is `sig`."""
    p = record.progress
    return TaskSummary(
        task_id=record.task_id,
        ino=sig[0],
        mtime_ns=sig[1],
        size=sig[2],
        status=record.status,
        task_type=_share(record.task_type),
        name=record.name,
        user_id=None if record.user_id is None else _share(record.user_id),
        priority=record.priority,
        created_at=record.created_at,
        created_ns=record.created_ns,
        started_at=record.started_at,
        finished_at=record.finished_at,
        attempts=record.attempts,
        model_id=record.result.model_id if record.result else None,
        error_kind=record.error.kind if record.error else None,
        idempotency_key=record.idempotency_key,
        percent=p.percent,
        phase=_share(p.phase),
        trial=p.trial,
        n_trials=p.n_trials,
        best_score=p.best_score,
        alerts=len(record.alerts),
    )


_NONE = type(None)
_NUMBER = (float, int)
# The types each value of a line may have, in _FIELDS order.
_TYPES: tuple[tuple[type, ...], ...] = (
    *((str,), (int,), (int,), (int,), (str,), (str,), (str, _NONE), (str, _NONE), (str,)),
    *(_NUMBER, (int,), (*_NUMBER, _NONE), (*_NUMBER, _NONE), (int,), (str, _NONE), (str, _NONE)),
    *((str, _NONE), _NUMBER, (str,), (int, _NONE), (int, _NONE), (*_NUMBER, _NONE), (int,)),
)


_KINDS_OR_NONE: dict[str | None, ErrorKind | None] = {None: None}
_KINDS_OR_NONE.update(_KINDS)
_BAD = object()  # what a lookup gives for a value that is not one of the names it knows
_SHARED_FIELDS = tuple(_FIELDS.index(f) for f in ("task_type", "user_id", "phase"))
_STATUS, _PRIORITY, _KIND = (_FIELDS.index(f) for f in ("status", "priority", "error_kind"))
_new_summary = partial(tuple.__new__, TaskSummary)  # a TaskSummary from a tuple of its values, at C speed


def _from_rows(rows: list[object]) -> list[TaskSummary] | None:
    """The summaries of a chunk of index lines, or None when any line is not exactly what `write_index`
    writes. Checked a column at a time (each check one pass at C speed: a start-up reads 100,000 lines)."""
    if set(map(type, rows)) != {list} or set(map(len, rows)) != {len(_FIELDS)}:  # type: ignore[arg-type]
        return None
    columns: list[Any] = list(zip(*rows, strict=True))
    for values, allowed in zip(columns, _TYPES, strict=True):
        if not set(map(type, values)) <= set(allowed):  # exact types: a bool is not an int here
            return None
    if not all_task_ids(columns[0]):
        return None
    columns[_STATUS] = list(map(_STATUSES.get, columns[_STATUS], repeat(_BAD)))
    columns[_PRIORITY] = list(map(_PRIORITIES.get, columns[_PRIORITY], repeat(_BAD)))
    columns[_KIND] = list(map(_KINDS_OR_NONE.get, columns[_KIND], repeat(_BAD)))
    if any(_BAD in columns[i] for i in (_STATUS, _PRIORITY, _KIND)):
        return None
    for i in _SHARED_FIELDS:  # one copy of the strings many summaries repeat
        columns[i] = list(map(_shared.setdefault, columns[i], columns[i]))
    return list(map(_new_summary, zip(*columns, strict=True)))


def write_index(path: Path, summaries: Iterable[TaskSummary]) -> int:
    """Write the index of `summaries` to `path` (atomically; blocking); returns how many."""
    count = 0

    def fill(f: Any) -> None:
        nonlocal count
        f.write(json.dumps(_HEADER, separators=(",", ":")).encode() + b"\n")
        lines: list[bytes] = []
        for s in summaries:
            lines.append(json.dumps(s, separators=(",", ":")).encode())
            count += 1
            if len(lines) >= _CHUNK:
                f.write(b"\n".join(lines) + b"\n")
                lines.clear()
        if lines:
            f.write(b"\n".join(lines) + b"\n")

    atomic_write(path, fill)
    return count


def read_index(path: Path) -> tuple[dict[str, TaskSummary] | None, str | None]:
    """The summaries `path` holds by task id, or (None, why not) when it is missing (why: None), not a
    plain file of a bounded size, torn, from another version or anything but what `write_index` writes.
    Blocking."""
    try:
        fd = open_no_follow(path, os.O_RDONLY)
    except FileNotFoundError:
        return None, None
    except NotARegularFile as exc:
        return None, f"it is {exc.strerror}"
    except OSError as exc:  # e.g. a link in place of its folder
        return None, f"it could not be opened ({exc.strerror or exc})"
    with open(fd, "rb") as f:
        if os.fstat(fd).st_size > _MAX_INDEX_BYTES:
            return None, f"it is larger than {_MAX_INDEX_BYTES} bytes"
        try:
            header = json.loads(f.readline(1 << 16))
        except ValueError:
            return None, "its first line is not its header"
        if header != json.loads(json.dumps(_HEADER)):
            return None, "it was written by another version"
        found: dict[str, TaskSummary] = {}
        lines = 0
        try:
            for rows in _chunks(f):
                if len(_shared) > 10_000:  # many users or phases: keep one copy of the common ones only
                    _shared.clear()
                summaries = _from_rows(rows)
                if summaries is None:
                    return None, "a line is not a task summary"
                found.update(zip(map(itemgetter(0), summaries), summaries, strict=True))
                lines += len(summaries)
        except ValueError:
            return None, "it is torn or not JSON"
    if len(found) != lines:
        return None, "a task has two lines"
    return found, None


def _chunks(f: Any) -> Iterator[list[object]]:
    """The index's lines, parsed _CHUNK at a time (raises ValueError on a line that is not JSON). The file
    is read whole (its size is capped) and split at C speed."""
    data = f.read()
    if data and not data.endswith(b"\n"):
        raise ValueError("a torn last line")
    lines = data.split(b"\n")[:-1]
    del data
    if lines and max(map(len, lines)) >= _MAX_LINE:
        raise ValueError("an overlong line")
    for start in range(0, len(lines), _CHUNK):
        yield _parse(lines[start : start + _CHUNK])


def _parse(lines: list[bytes]) -> list[object]:
    rows = json.loads(b"[" + b",".join(lines) + b"]")
    if not isinstance(rows, list) or len(rows) != len(lines):  # a line holding "1,2" would pass as two
        raise ValueError("not one value a line")
    return rows
