"""Task records on disk: the only code that reads or writes `<queue>/<task_id>.json` (see layout.py).

Every write is atomic (files.py): a reader sees the old record or the new one, never a torn one.
Several processes may share one directory, so a cached record is trusted only while its file's
(inode, mtime, size) is unchanged, and every read-modify-write runs under a queue-wide flock.

Tasks that ended long ago move to the archive (archive.py, `archive_ended`): `find` and
`update_anywhere` read and change a task wherever it is; `get` and `update` see task files only.

Every method here blocks on the disk (and `update`/`create` on that flock): call them from a worker
thread, never on an event loop. The in-memory cache is safe to use from several threads at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from pydantic import ValidationError

from mcp_trainer.engine.archive import TaskArchive, ended_at
from mcp_trainer.engine.flocks import acquire
from mcp_trainer.engine.layout import TASK_SUFFIX, QueueLayout
from mcp_trainer.engine.processes import pid_alive
from mcp_trainer.errors import InvalidInputError, InvalidStateError, TaskNotFoundError
from mcp_trainer.files import (
    TMP_SUFFIX,
    NotARegularFile,
    atomic_write_bytes,
    fsync_dir,
    open_no_follow,
    read_capped,
    real_dir,
    temp_writer_pid,
)
from mcp_trainer.ids import is_task_id
from mcp_trainer.records import TaskRecord

__all__ = ["MAX_RECORD_BYTES", "TaskStore"]

# A record is a few kilobytes. Anything near this was not written by mcp-trainer: it is quarantined
# rather than parsed again on every change (an 89 MB record took 17 s per update).
MAX_RECORD_BYTES = 1 << 20
# A new task's record must leave room to grow (history, progress, result) under MAX_RECORD_BYTES.
_MAX_NEW_RECORD_BYTES = MAX_RECORD_BYTES // 4

log = logging.getLogger(__name__)
T = TypeVar("T")
_Sig = tuple[int, int, int]  # inode, mtime_ns, size
# A directory whose mtime is this recent may change again within the same clock tick: rescan it.
_RACY_NS = 100_000_000
# How old a view of the other processes' tasks `create` checks a new task against: a full scan of a large
# queue costs ~25 ms (10,000 files), too much for every submit, so at most one a second.
_ADMIT_VIEW_S = 1.0
_STALE_TEMP_S = 3600
_ARCHIVE_BATCH = 500  # tasks archived per hold of the record lock, so that writers wait little


def _sig(st: os.stat_result) -> _Sig:
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class TaskStore:
    """Task records on disk, with an in-memory cache kept honest by stat checks."""

    def __init__(self, layout: QueueLayout) -> None:
        self.layout = layout
        layout.create()
        self._lock_fd = os.open(layout.records_lock, os.O_RDWR | os.O_CREAT, 0o644)
        self._flock_guard = threading.RLock()  # one thread of this process at a time in the flock
        self._lock_depth = 0  # nested holds of the flock by the thread in it
        self._cache_guard = threading.Lock()  # short: guards the dicts below, never held across I/O
        self._cache: dict[str, tuple[_Sig, TaskRecord]] = {}
        self._waiting: dict[str, TaskRecord] = {}  # the queued and retrying subset of the cache
        self._dir_mtime_ns: int | None = None
        self._refreshed_at = -float("inf")  # time.monotonic() of the last refresh
        self.version = 0  # bumped whenever the cache changes: derived views key their own caches on it
        self.quarantined: list[tuple[str, str]] = []  # (file name, reason), this process's moves
        self.archive = TaskArchive(layout, MAX_RECORD_BYTES)

    @property
    def root(self) -> Path:
        return self.layout.root

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._lock_fd)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the queue-wide record lock (threads of this process and other processes alike). Nested
        holds by one thread take it once (an inner release must not drop the outer hold). Another process
        that holds it for over LOCK_WAIT_S (stopped, hung) makes this raise TrainerError naming it."""
        with self._flock_guard:
            outermost = self._lock_depth == 0
            if outermost:
                acquire(self._lock_fd, self.layout.records_lock)
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
                if outermost:
                    fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    # -- the cache -----------------------------------------------------------------------------------

    def _put(self, sig: _Sig, record: TaskRecord) -> None:
        with self._cache_guard:
            self._cache[record.task_id] = (sig, record)
            if record.status.is_waiting():
                self._waiting[record.task_id] = record
            else:
                self._waiting.pop(record.task_id, None)
            self.version += 1

    def _drop(self, task_id: str) -> None:
        with self._cache_guard:
            if self._cache.pop(task_id, None) is not None:
                self._waiting.pop(task_id, None)
                self.version += 1

    def _cached_sig(self, task_id: str) -> tuple[_Sig, TaskRecord] | None:
        with self._cache_guard:
            return self._cache.get(task_id)

    def waiting(self) -> list[TaskRecord]:
        """Queued and retrying records as last seen (call `refresh` first for other processes' changes)."""
        with self._cache_guard:
            return list(self._waiting.values())

    def cached(self) -> list[TaskRecord]:
        """Every record as last seen, without touching the disk."""
        with self._cache_guard:
            return [rec for _, rec in self._cache.values()]

    # -- reads ---------------------------------------------------------------------------------------

    def _load(self, path: Path, st: os.stat_result) -> TaskRecord | None:
        """Parse one file; move it to corrupt/ (and return None) if it is not a plain file of a bounded
        size that parses and validates as the record its name says."""
        if not is_task_id(path.stem):
            self.quarantine(path, f"{path.name} is not named after a task id (task_YYYYMMDDTHHMMSS_xxxxxxxx)")
            return None
        try:
            data = read_capped(path, MAX_RECORD_BYTES)
            record = TaskRecord.model_validate_json(data)
        except FileNotFoundError:
            return None
        except NotARegularFile as exc:
            self.quarantine(path, f"{path.name} is {exc.strerror}, not a task record")
            return None
        except ValidationError as exc:
            # Not the values themselves: the file may be anything a writer of the queue put there.
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'record'}: {e['msg']}" for e in exc.errors()
            )
            self.quarantine(
                path, f"not a valid task record ({exc.error_count()} problems): {problems[:2000]}"
            )
            return None
        except (ValueError, UnicodeDecodeError) as exc:
            self.quarantine(path, f"not a valid task record: {type(exc).__name__}")
            return None
        if record.task_id != path.stem:
            self.quarantine(path, f"file name says {path.stem} but the record says {record.task_id[:100]!r}")
            return None
        self._put(_sig(st), record)
        return record

    def quarantine(self, path: Path, reason: str) -> None:
        """Move `path` (whatever it is: a link moves as a link) into corrupt/, with a `.reason.txt`."""
        corrupt = real_dir(self.layout.corrupt_dir)
        target = corrupt / path.name
        if os.path.lexists(target) or os.path.lexists(f"{target}.reason.txt"):
            target = corrupt / f"{path.stem}.{time.time_ns()}{path.suffix}"
        try:
            os.replace(path, target)
        except FileNotFoundError:
            return
        self._drop(path.stem)
        self.quarantined.append((path.name, reason))
        log.warning("moved %s to %s: %s", path.name, corrupt, reason)
        try:
            fd = open_no_follow(
                target.with_name(target.name + ".reason.txt"), os.O_WRONLY | os.O_CREAT | os.O_EXCL
            )
        except OSError:
            log.exception("could not write why %s was quarantined", path.name)
            return
        with open(fd, "w", encoding="utf-8") as f:
            f.write(reason + "\n")

    def get(self, task_id: str) -> TaskRecord:
        """The current record of `task_id`; raises TaskNotFoundError (InvalidInputError if malformed)."""
        path = self.layout.task_file(task_id)
        try:
            st = path.lstat()
        except FileNotFoundError:
            self._drop(task_id)
            raise TaskNotFoundError(
                f"No task {task_id} in this queue.",
                "Call list_training_tasks to see the tasks that exist.",
            ) from None
        cached = self._cached_sig(task_id)
        if cached is not None and cached[0] == _sig(st):
            return cached[1]
        record = self._load(path, st)
        if record is None:
            why = next((reason for name, reason in reversed(self.quarantined) if name == path.name), None)
            raise TaskNotFoundError(
                f"Task {task_id} could not be read ({why or 'it changed while being read'}); its file was "
                f"moved to {self.layout.corrupt_dir}.",
                "Submit the task again.",
            )
        return record

    def find(self, task_id: str) -> tuple[TaskRecord, bool]:
        """The record of `task_id` from its task file or, once archived, from the archive (True); raises
        as `get` when it is in neither."""
        try:
            return self.get(task_id), False
        except TaskNotFoundError:
            archived = self.archive.get(task_id)
            if archived is None:
                raise
            return archived, True

    def refresh(self) -> None:
        """Bring the cache in line with the directory (new, changed, removed and corrupt files)."""
        started = time.monotonic()
        st = self.root.stat()
        if st.st_mtime_ns == self._dir_mtime_ns and time.time_ns() - st.st_mtime_ns > _RACY_NS:
            self._refreshed_at = started
            return
        seen: set[str] = set()
        # A first load builds thousands of long-lived records: the cyclic collector would rescan the growing
        # cache again and again (about a third of the start-up time with 10,000 tasks).
        collecting = gc.isenabled()
        gc.disable()
        try:
            self._scan(seen)
        finally:
            if collecting:
                gc.enable()
        with self._cache_guard:
            gone = set(self._cache) - seen
        for task_id in gone:
            self._drop(task_id)
        self._dir_mtime_ns = st.st_mtime_ns
        self._refreshed_at = started

    def _scan(self, seen: set[str]) -> None:
        for entry in os.scandir(self.root):
            name = entry.name
            if not name.endswith(TASK_SUFFIX) or name.startswith("."):
                continue
            task_id = name.removesuffix(TASK_SUFFIX)
            cached = self._cached_sig(task_id)
            # Every write makes a new inode (rename over the old file), so a different inode is a change.
            if cached is None or cached[0][0] != entry.inode():
                try:
                    record = self._load(Path(entry.path), entry.stat(follow_symlinks=False))
                except FileNotFoundError:
                    continue
                if record is None:
                    continue
            seen.add(task_id)

    def all(self) -> list[TaskRecord]:
        """Every valid record (refreshed from disk)."""
        self.refresh()
        return self.cached()

    # -- writes --------------------------------------------------------------------------------------

    def _write(self, record: TaskRecord) -> None:
        path = self.layout.task_file(record.task_id)
        atomic_write_bytes(path, record.model_dump_json().encode("utf-8"))
        self._put(_sig(path.stat()), record)

    def create(
        self, record: TaskRecord, admit: Callable[[TaskRecord, list[TaskRecord]], None] | None = None
    ) -> TaskRecord:
        """Persist a new task and return it; the file is durable when this returns. A record with an
        `idempotency_key` that a task of the queue already has is not written: that task is returned
        (by every process: the check and the write hold the queue-wide lock). `admit(record, waiting)`,
        called under that lock with the waiting records of the queue, may raise to refuse the task
        (nothing is written; see `_admit` for how fresh `waiting` is). Raises InvalidInputError for a task
        whose arguments make a record too large to keep."""
        size = len(record.model_dump_json())
        if size > _MAX_NEW_RECORD_BYTES:
            raise InvalidInputError(
                f"The task's arguments take {size:,} bytes; at most {_MAX_NEW_RECORD_BYTES:,} are accepted.",
                "Name fewer columns (feature_columns may be left out to use every other column).",
            )
        with self.locked():
            if record.idempotency_key is not None:
                self.refresh()
                key = record.idempotency_key
                earlier = next((r for r in self.cached() if r.idempotency_key == key), None)
                if earlier is not None:
                    return earlier
            if admit is not None:
                self._admit(record, admit)
            if self.layout.task_file(record.task_id).exists():
                raise FileExistsError(record.task_id)
            self._write(record)
            return record

    def _admit(self, record: TaskRecord, admit: Callable[[TaskRecord, list[TaskRecord]], None]) -> None:
        """`admit` on the waiting records as this process last saw them (its own writes included), from
        a scan at most _ADMIT_VIEW_S old; a refusal stands only if a fresh scan confirms it. Under the
        lock, so submits of this process never pass what `admit` allows; those of other processes in the
        last second may go unseen."""
        if time.monotonic() - self._refreshed_at > _ADMIT_VIEW_S:
            self.refresh()
        try:
            admit(record, self.waiting())
        except Exception:
            self.refresh()
            admit(record, self.waiting())

    def update(self, task_id: str, change: Callable[[TaskRecord], T]) -> tuple[TaskRecord, T]:
        """Read the current record under the lock, apply `change` to a copy, write it if it changed.

        `change` may raise to abort; nothing is written then.
        """
        with self.locked():
            current = self.get(task_id)
            draft = current.model_copy(deep=True)
            outcome = change(draft)
            if draft != current:
                self._write(draft)
            return draft, outcome

    def update_anywhere(self, task_id: str, change: Callable[[TaskRecord], T]) -> tuple[TaskRecord, T]:
        """`update`, or for an archived task the same change written into the archive. An archived task
        ended and stays ended: a change of its status raises InvalidStateError, and nothing is written."""
        with self.locked():
            try:
                return self.update(task_id, change)
            except TaskNotFoundError:
                current = self.archive.get(task_id)
                if current is None:
                    raise
            draft = current.model_copy(deep=True)
            outcome = change(draft)
            if draft.status is not current.status:
                raise InvalidStateError(
                    f"Task {task_id} ended more than the archive's age limit ago and is archived: it stays "
                    f"{current.status.value}.",
                    "Submit the task again to run it anew.",
                )
            if draft != current:
                self.archive.put([draft], self.quarantine)
            return draft, outcome

    def archive_ended(self, ended_before: float, *, dry_run: bool = False) -> list[TaskRecord]:
        """Move the records of tasks that ended before `ended_before` into the archive and remove their
        task files (the archive is written and synced first); returns them. With `dry_run`, only returns
        them. Their logs and work folders are left to the caller."""
        with self.locked():
            self.refresh()
            due = [r for r in self.cached() if r.status.is_terminal() and ended_at(r) < ended_before]
        due.sort(key=lambda r: (r.created_ns, r.task_id))
        if dry_run:
            return due
        moved: list[TaskRecord] = []
        for start in range(0, len(due), _ARCHIVE_BATCH):
            with self.locked():
                current = [self._current(r.task_id) for r in due[start : start + _ARCHIVE_BATCH]]
                batch = [r for r in current if r is not None and r.status.is_terminal()]
                if not batch:
                    continue
                self.archive.put(batch, self.quarantine)
                for r in batch:
                    with contextlib.suppress(FileNotFoundError):
                        self.layout.task_file(r.task_id).unlink()
                    self._drop(r.task_id)
                fsync_dir(self.root)
                moved += batch
        return moved

    def _current(self, task_id: str) -> TaskRecord | None:
        try:
            return self.get(task_id)
        except TaskNotFoundError:
            return None

    # -- housekeeping --------------------------------------------------------------------------------

    def sweep_temp_files(self, where: Path | None = None) -> int:
        """Remove temporary files whose writer is dead (or that are old) from the queue's directory (or
        `where`, one of its folders); returns how many."""
        removed = 0
        now = time.time()
        for entry in os.scandir(where or self.root):
            if not (entry.name.startswith(".") and entry.name.endswith(TMP_SUFFIX)):
                continue
            pid = temp_writer_pid(entry.name)
            alive = pid is not None and pid_alive(pid)
            try:
                if not alive or now - entry.stat().st_mtime > _STALE_TEMP_S:
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:
                continue
        return removed
