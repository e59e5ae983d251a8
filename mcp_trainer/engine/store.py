"""Task records on disk: the only code that reads or writes `<queue>/<task_id>.json` (see layout.py).

Every write is atomic (files.py): a reader sees the old record or the new one, never a torn one.
Several processes may share one directory, so what this process holds of a task file (taskcache.py: a
summary of every task, the full records of those that have not ended) is trusted only while the file's
(inode, mtime, size) is unchanged, and every read-modify-write runs under a queue-wide flock. An ended
task's full record is read from its file when asked for.

A start-up reads the summaries from `.index.jsonl` (summary.py) and parses only the task files whose
signature differs from the index's (and those of tasks that have not ended); the index is a cache, written
by rename, never trusted over the task files. Later refreshes short-cut on the directory's mtime: this
process's own writes (under the lock) keep its view current, another process's change costs one scan of
the directory's names and inodes.

Tasks that ended long ago move to the archive (archive.py, `archive_ended`): `find` and
`update_anywhere` read and change a task wherever it is; `get` and `update` see task files only.

Every method here blocks on the disk (and `update`/`create` on that flock): call them from a worker
thread, never on an event loop. The in-memory cache is safe to use from several threads at once.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import gc
import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import BinaryIO, TypeVar

from pydantic import ValidationError

from mcp_trainer.engine.archive import TaskArchive
from mcp_trainer.engine.flocks import acquire
from mcp_trainer.engine.layout import TASK_SUFFIX, QueueLayout
from mcp_trainer.engine.processes import pid_alive
from mcp_trainer.engine.summary import Sig, TaskSummary, read_index, summarize, write_index
from mcp_trainer.engine.taskcache import Held, TaskCache
from mcp_trainer.errors import InvalidInputError, InvalidStateError, TaskNotFoundError
from mcp_trainer.files import (
    TMP_SUFFIX,
    NotARegularFile,
    atomic_write,
    fsync_dir,
    open_no_follow,
    real_dir,
    temp_writer_pid,
)
from mcp_trainer.ids import is_task_id
from mcp_trainer.records import TaskRecord, TaskStatus

__all__ = ["MAX_RECORD_BYTES", "TaskStore"]

# A record is a few kilobytes. Anything near this was not written by mcp-trainer: it is quarantined
# rather than parsed again on every change (an 89 MB record took 17 s per update).
MAX_RECORD_BYTES = 1 << 20
# A new task's record must leave room to grow (history, progress, result) under MAX_RECORD_BYTES.
_MAX_NEW_RECORD_BYTES = MAX_RECORD_BYTES // 4

log = logging.getLogger(__name__)
T = TypeVar("T")
# A scan that starts within this long of the directory's last change may miss a change made in the same
# clock tick (mtimes are coarse): it is not trusted, and the next refresh scans again.
_RACY_NS = 100_000_000
# How old a view of the other processes' tasks `create` checks a new task against (a refresh costs one
# stat when nothing changed, a scan of the names when another process wrote).
_ADMIT_VIEW_S = 1.0
# However quiet the directory looks, a refresh scans it this often: a file changed by hand in the clock
# tick of one of this process's own writes is seen within this long.
_SCAN_EVERY_S = 60.0
# The index is saved when this many task files changed since it was, or when any did this long ago.
_INDEX_AFTER_CHANGES = 2000
_INDEX_AFTER_S = 600.0
_INDEX_RETRY_S = 60.0
_STALE_TEMP_S = 3600
_FREEZE_AFTER = 10_000  # tasks loaded at start-up past which the collector stops walking them
_ENDED = frozenset(s for s in TaskStatus if s.is_terminal())
_ARCHIVE_BATCH = 500  # tasks archived per hold of the record lock, so that writers wait little


def _sig(st: os.stat_result) -> Sig:
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _task_id_of(name: str) -> str | None:
    """The task a directory entry names, if it looks like a task file at all (its id is checked later)."""
    if not name.endswith(TASK_SUFFIX) or name.startswith("."):
        return None
    return name.removesuffix(TASK_SUFFIX)


def _read_record_file(path: Path) -> tuple[Sig, bytes]:
    """The bytes of the plain file at `path` (no link followed), with the signature of exactly the file
    read; NotARegularFile beyond MAX_RECORD_BYTES."""
    fd = open_no_follow(path, os.O_RDONLY)
    with open(fd, "rb") as f:
        sig = _sig(os.fstat(fd))
        data = f.read(MAX_RECORD_BYTES + 1)
    if len(data) > MAX_RECORD_BYTES:
        raise NotARegularFile(errno.EFBIG, f"larger than {MAX_RECORD_BYTES} bytes", str(path))
    return sig, data


class TaskStore:
    """Task records on disk, with an in-memory cache kept honest by stat checks."""

    def __init__(self, layout: QueueLayout) -> None:
        self.layout = layout
        layout.create()
        self._lock_fd = os.open(layout.records_lock, os.O_RDWR | os.O_CREAT, 0o644)
        self._flock_guard = threading.RLock()  # one thread of this process at a time in the flock
        self._lock_depth = 0  # nested holds of the flock by the thread in it
        self._scan_guard = threading.Lock()  # one refresh at a time
        self._cache = TaskCache()
        # The directory's mtime that the cache reflects, and whether that can be trusted (see _RACY_NS);
        # None before the first refresh.
        self._dir_view: tuple[int | None, bool] = (None, False)
        self._scanned_at = -float("inf")  # time.monotonic() of the last scan
        self._refreshed_at = -float("inf")  # and of the last refresh, scan or not
        self._index_saved: tuple[int, float] = (0, time.monotonic())  # cache changes, when
        self._index_failed_at = -float("inf")
        self.parsed = 0  # task files parsed by this store (tests count them)
        self.quarantined: list[tuple[str, str]] = []  # (file name, reason), this process's moves
        self.archive = TaskArchive(layout, MAX_RECORD_BYTES)

    @property
    def root(self) -> Path:
        return self.layout.root

    @property
    def version(self) -> int:
        """Bumped whenever a task's summary changes: derived views key their own caches on it."""
        return self._cache.version

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

    # -- what is held, as last seen (call `refresh` first for other processes' changes) -------------

    def summaries(self) -> list[TaskSummary]:
        """A summary of every task file, oldest first (created_ns, task_id)."""
        return self._cache.ordered()

    def summary(self, task_id: str) -> TaskSummary | None:
        return self._cache.summary(task_id)

    def ids(self) -> Mapping[str, TaskSummary]:
        """A live read-only mapping of task id to summary, for membership tests without a copy."""
        return self._cache.ids()

    def counts(self) -> dict[TaskStatus, int]:
        """Task files per status."""
        return self._cache.counts()

    def live(self) -> list[TaskRecord]:
        """Full records of the tasks that have not ended (waiting or running)."""
        return self._cache.live()

    def live_now(self) -> list[TaskRecord]:
        """`refresh`, then `live`: what waits or runs now, other processes' changes included."""
        self.refresh()
        return self._cache.live()

    def live_record(self, task_id: str) -> TaskRecord | None:
        """The full record of a task that has not ended, as last seen; None for any other."""
        return self._cache.live_record(task_id)

    def waiting(self) -> list[TaskRecord]:
        """Queued and retrying records."""
        return self._cache.waiting()

    # -- reads ---------------------------------------------------------------------------------------

    def _parse(self, path: Path) -> tuple[Sig, TaskRecord] | None:
        """Parse one file; move it to corrupt/ (and return None) if it is not a plain file of a bounded
        size that parses and validates as the record its name says."""
        if not is_task_id(path.stem):
            self.quarantine(path, f"{path.name} is not named after a task id (task_YYYYMMDDTHHMMSS_xxxxxxxx)")
            return None
        self.parsed += 1
        try:
            sig, data = _read_record_file(path)
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
        return sig, record

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
        if path.parent == self.root:
            self._cache.drop([path.stem])
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
        """The current record of `task_id`; raises TaskNotFoundError (InvalidInputError if malformed).
        An ended task's record is read from its file unless it was read recently."""
        path = self.layout.task_file(task_id)
        try:
            st = path.lstat()
        except FileNotFoundError:
            self._cache.drop([task_id])
            raise TaskNotFoundError(
                f"No task {task_id} in this queue.",
                "Call list_training_tasks to see the tasks that exist.",
            ) from None
        held = self._cache.record(task_id, _sig(st))
        if held is not None:
            return held
        loaded = self._parse(path)
        if loaded is None:
            why = next((reason for name, reason in reversed(self.quarantined) if name == path.name), None)
            raise TaskNotFoundError(
                f"Task {task_id} could not be read ({why or 'it changed while being read'}); its file was "
                f"moved to {self.layout.corrupt_dir}.",
                "Submit the task again.",
            )
        self._cache.put(*loaded)
        return loaded[1]

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

    def status_of(self, task_id: str) -> TaskStatus | None:
        """A task's status as last seen, archived tasks included; None when it is in neither place."""
        summary = self._cache.summary(task_id)
        if summary is not None:
            return summary.status
        archived = self.archive.get(task_id)
        return None if archived is None else archived.status

    def refresh(self) -> None:
        """Bring what is held in line with the directory (new, changed, removed and corrupt files). The
        first one reads the index and parses only the files it does not vouch for."""
        with self._scan_guard:
            started, started_ns = time.monotonic(), time.time_ns()
            mtime = self.root.stat().st_mtime_ns
            seen_mtime, settled = self._dir_view
            if mtime == seen_mtime and settled and started - self._scanned_at < _SCAN_EVERY_S:
                self._refreshed_at = started
                return
            # A first load builds many long-lived objects: the cyclic collector would rescan the growing
            # cache again and again (about a third of the start-up time with 10,000 tasks).
            collecting = gc.isenabled()
            gc.disable()
            try:
                if seen_mtime is None:
                    self._first_scan()
                else:
                    self._scan()
            finally:
                if collecting:
                    gc.enable()
            self._dir_view = (mtime, started_ns - mtime > _RACY_NS)
            self._scanned_at = self._refreshed_at = started
            if seen_mtime is None:
                self._index_saved = (self._cache.changes, started)
                if len(self._cache.ids()) >= _FREEZE_AFTER:
                    # What the first load built lives as long as the process: left to the cyclic
                    # collector, every full collection would walk it again (tens of milliseconds with
                    # 100,000 tasks, in whatever call it falls). Summaries hold no cycles: one that is
                    # dropped later is still freed (by its reference count).
                    gc.collect()
                    gc.freeze()

    def _first_scan(self) -> None:
        """Load every task file's summary: from the index where it vouches for the file (an ended task
        whose file has the signature the index has), else by parsing the file."""
        index, why = read_index(self.layout.index_file)
        if why is not None:
            log.warning(
                "%s is not used (%s): every task file is read, and the index written anew",
                self.layout.index_file,
                why,
            )
        index = index or {}
        before = set(self._cache.ids())  # what this process wrote before its first refresh
        listed: set[str] = set()
        vouched: set[str] = set()
        unvouched: list[str] = []
        # One pass over up to 100,000 entries: what _task_id_of checks is inlined, and methods are bound
        # once (this loop was ~0.8 s of a 2.4 s load at that size).
        ended, isreg, suffix, cut = _ENDED, stat.S_ISREG, TASK_SUFFIX, -len(TASK_SUFFIX)
        listed_add, vouched_add, unvouched_add, known_of = (
            listed.add,
            vouched.add,
            unvouched.append,
            index.get,
        )
        with os.scandir(self.root) as entries:
            for entry in entries:
                name = entry.name
                if not name.endswith(suffix) or name.startswith("."):
                    continue
                task_id = name[:cut]
                listed_add(task_id)
                known = known_of(task_id)
                if known is not None and known.status in ended:
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        unvouched_add(entry.path)  # gone meanwhile: the parse drops it
                        continue
                    if (
                        st.st_ino == known.ino
                        and st.st_mtime_ns == known.mtime_ns
                        and st.st_size == known.size
                        and isreg(st.st_mode)
                    ):
                        vouched_add(task_id)
                        continue
                unvouched_add(entry.path)
        # In the index's order (creation order): the cache sorts them in one pass.
        held: list[Held] = [(s, None) for task_id, s in index.items() if task_id in vouched]
        del index
        held += self._parsed(unvouched)
        self._cache.put_many(held)
        self._drop_gone(before - listed)
        log.info(
            "loaded %d task(s); %d file(s) parsed, the index vouched for the rest", len(held), len(unvouched)
        )
        if why is not None or len(unvouched) > max(100, len(held) // 20):
            self.save_index()

    def _parsed(self, paths: list[str]) -> list[Held]:
        """Parse these task files; an ended task's record is not kept (its summary is)."""
        held: list[Held] = []
        for path in paths:
            loaded = self._parse(Path(path))
            if loaded is not None:
                sig, record = loaded
                held.append((summarize(record, sig), None if record.status.is_terminal() else record))
        return held

    def _scan(self) -> None:
        """Compare the directory's names and inodes with what is held (and, for tasks that have not ended,
        the whole signature: an inode may be reused); parse what changed, forget what is gone."""
        known = self._cache.ids()
        before = set(known)
        with os.scandir(self.root) as entries:
            listed = {e.name: e for e in entries}
        seen: set[str] = set()
        changed: list[str] = []
        for name, entry in listed.items():
            task_id = _task_id_of(name)
            if task_id is None:
                continue
            seen.add(task_id)
            summary = known.get(task_id)
            if (
                summary is None
                or summary.ino != entry.inode()
                or (not summary.status.is_terminal() and not self._same_file(entry, summary.sig))
            ):
                changed.append(entry.path)
        self._cache.put_many(self._parsed(changed))
        self._drop_gone(before - seen)

    def _drop_gone(self, unlisted: set[str]) -> None:
        """Forget the tasks a scan did not list whose files are gone. Only tasks held before the scan
        began are passed: one this process created meanwhile may not be listed."""
        self._cache.drop([t for t in unlisted if not os.path.lexists(self.layout.task_file(t))])

    @staticmethod
    def _same_file(entry: os.DirEntry[str], sig: Sig) -> bool:
        try:
            return _sig(entry.stat(follow_symlinks=False)) == sig
        except FileNotFoundError:
            return False

    # -- the index -----------------------------------------------------------------------------------

    def save_index(self) -> int:
        """Write the index of every summary held (`.index/tasks.jsonl`, by rename); returns how many.
        Needs no lock: each entry is checked against its own file when read."""
        changes = self._cache.changes
        summaries = self._cache.ordered()
        real_dir(self.layout.index_dir)
        count = write_index(self.layout.index_file, summaries)
        self._index_saved = (changes, time.monotonic())
        return count

    def save_index_if_due(self) -> bool:
        """`save_index` when many task files changed since it was last saved, or some did long ago;
        whether it did. A failure (a full disk) is logged and tried again a minute later: the index is
        only a cache."""
        changes, at = self._index_saved
        new = self._cache.changes - changes
        now = time.monotonic()
        due = new >= _INDEX_AFTER_CHANGES or (new > 0 and now - at >= _INDEX_AFTER_S)
        if not due or now - self._index_failed_at < _INDEX_RETRY_S:
            return False
        try:
            self.save_index()
        except OSError as exc:
            self._index_failed_at = now
            log.warning(
                "could not save %s (%s); the next start-up reads more task files", self.layout.index_file, exc
            )
            return False
        return True

    # -- writes --------------------------------------------------------------------------------------

    def _write(self, record: TaskRecord) -> None:
        """Write `record`'s file (under the lock) and hold it with the signature of exactly that file."""
        path = self.layout.task_file(record.task_id)
        data = record.model_dump_json().encode("utf-8")
        written: list[Sig] = []

        def fill(f: BinaryIO) -> None:
            f.write(data)
            f.flush()
            written.append(_sig(os.fstat(f.fileno())))  # a rename keeps the mtime; the inode moves along

        with self._own_change():
            atomic_write(path, fill)
        self._cache.put(written[0], record)

    @contextlib.contextmanager
    def _own_change(self) -> Iterator[None]:
        """Around a change of the queue directory made under the lock: when the cache reflected the
        directory before it, it still does after (this process holds the change), so the next refresh
        need not scan. A change made meanwhile without the lock (by hand) waits for the next scan."""
        before = self.root.stat().st_mtime_ns
        yield
        seen_mtime, settled = self._dir_view
        if before == seen_mtime and settled:
            self._dir_view = (self.root.stat().st_mtime_ns, True)

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
                earlier = self._cache.by_key(record.idempotency_key)
                if earlier is not None:
                    with contextlib.suppress(TaskNotFoundError):
                        return self.get(earlier)
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
            due = [
                s.task_id for s in self.summaries() if s.status.is_terminal() and s.ended_at < ended_before
            ]
        if dry_run:
            return [r for r in map(self._current, due) if r is not None]
        moved: list[TaskRecord] = []
        for start in range(0, len(due), _ARCHIVE_BATCH):
            with self.locked():
                current = [self._current(task_id) for task_id in due[start : start + _ARCHIVE_BATCH]]
                batch = [r for r in current if r is not None and r.status.is_terminal()]
                if not batch:
                    continue
                self.archive.put(batch, self.quarantine)
                with self._own_change():
                    for r in batch:
                        with contextlib.suppress(FileNotFoundError):
                            self.layout.task_file(r.task_id).unlink()
                self._cache.drop(r.task_id for r in batch)
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
        """Remove temporary files whose writer is dead (or that are old) from the queue's directory and
        its index folder (or `where`, one of its folders); returns how many."""
        if where is None:
            index_dir = self.layout.index_dir
            removed = self.sweep_temp_files(index_dir) if index_dir.is_dir() else 0
        else:
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
