"""The only code that reads or writes the queue directory.

Layout of a queue directory::

    <task_id>.json          one task record each, replaced atomically on every change
    .records.lock           flock'd around every read-modify-write, by every process sharing the queue
    .owner.lock             flock'd by the one process that executes tasks (see scheduler.py)
    corrupt/                files that did not parse or validate, each with a `.reason.txt`
    logs/<task_id>.log      worker log lines
    work/<task_id>/         a task's working state (e.g. its Optuna study), kept for resumption

Writes go to a temporary file in the same directory, are flushed and fsynced, then `os.replace`d over
the old file, and the directory is fsynced: a reader sees the old record or the new one, never a torn
one. Temporary files left by a process that died are swept by `sweep_temp_files`.

Several processes may share one directory, so every record read inside `update` is checked against the
file on disk (inode, mtime, size) before it is trusted.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, TypeVar

from pydantic import ValidationError

from mcp_trainer.errors import TaskNotFoundError
from mcp_trainer.ids import check_task_id
from mcp_trainer.models import TaskRecord

__all__ = ["TaskStore"]

T = TypeVar("T")
_Sig = tuple[int, int, int]  # inode, mtime_ns, size
# A directory whose mtime is this recent may change again within the same clock tick: rescan it.
_RACY_NS = 100_000_000
_TMP_SUFFIX = ".tmp"


def _sig(st: os.stat_result) -> _Sig:
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that a crash at any moment leaves the old file or the new one."""
    atomic_write(path, lambda f: f.write(data))


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Have `write` fill `path` through a temporary file, fsynced and renamed over it, then fsync the
    directory: a crash at any moment leaves the old file or the new one, never a part of either."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{_TMP_SUFFIX}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


class TaskStore:
    """Task records on disk, with an in-memory cache kept honest by stat checks."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.logs_dir = self.root / "logs"
        self.work_dir = self.root / "work"
        self.corrupt_dir = self.root / "corrupt"
        for d in (self.root, self.logs_dir, self.work_dir):
            d.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.root / ".records.lock", os.O_RDWR | os.O_CREAT, 0o644)
        self._thread_lock = threading.RLock()
        self._cache: dict[str, tuple[_Sig, TaskRecord]] = {}
        self._dir_mtime_ns: int | None = None
        self._waiting: dict[str, TaskRecord] = {}  # the queued and retrying subset of the cache
        self.version = 0  # bumped whenever the cache changes: derived views key their own caches on it
        self.quarantined: list[tuple[str, str]] = []  # (file name, reason), this process's moves

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._lock_fd)

    # -- paths -------------------------------------------------------------------------------------

    def path_for(self, task_id: str) -> Path:
        return self.root / f"{check_task_id(task_id)}.json"

    def log_path(self, task_id: str) -> Path:
        return self.logs_dir / f"{check_task_id(task_id)}.log"

    def work_path(self, task_id: str) -> Path:
        return self.work_dir / check_task_id(task_id)

    # -- locking -----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the queue-wide record lock (threads of this process and other processes alike)."""
        with self._thread_lock:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    # -- reads -------------------------------------------------------------------------------------

    def _load(self, path: Path, st: os.stat_result) -> TaskRecord | None:
        """Parse one file; move it to corrupt/ (and return None) if it does not parse or validate."""
        try:
            data = path.read_bytes()
            record = TaskRecord.model_validate_json(data)
        except FileNotFoundError:
            return None
        except (ValidationError, ValueError, UnicodeDecodeError) as exc:
            self._quarantine(path, f"{type(exc).__name__}: {exc}")
            return None
        if record.task_id != path.stem:
            self._quarantine(path, f"file name says {path.stem} but the record says {record.task_id}")
            return None
        self._put(_sig(st), record)
        return record

    def _put(self, sig: _Sig, record: TaskRecord) -> None:
        self._cache[record.task_id] = (sig, record)
        if record.status.is_waiting():
            self._waiting[record.task_id] = record
        else:
            self._waiting.pop(record.task_id, None)
        self.version += 1

    def _drop(self, task_id: str) -> None:
        if self._cache.pop(task_id, None) is not None:
            self._waiting.pop(task_id, None)
            self.version += 1

    def _quarantine(self, path: Path, reason: str) -> None:
        self.corrupt_dir.mkdir(exist_ok=True)
        target = self.corrupt_dir / path.name
        if target.exists():
            target = self.corrupt_dir / f"{path.stem}.{time.time_ns()}{path.suffix}"
        try:
            os.replace(path, target)
        except FileNotFoundError:
            return
        target.with_name(target.name + ".reason.txt").write_text(reason + "\n", encoding="utf-8")
        self._drop(path.stem)
        self.quarantined.append((path.name, reason))

    def get(self, task_id: str) -> TaskRecord:
        """The current record of `task_id`; raises TaskNotFoundError (InvalidInputError if malformed)."""
        path = self.path_for(task_id)
        try:
            st = path.stat()
        except FileNotFoundError:
            self._drop(task_id)
            raise TaskNotFoundError(
                f"No task {task_id} in this queue.",
                "Call list_training_tasks to see the tasks that exist.",
            ) from None
        cached = self._cache.get(task_id)
        if cached is not None and cached[0] == _sig(st):
            return cached[1]
        record = self._load(path, st)
        if record is None:
            raise TaskNotFoundError(
                f"Task {task_id} could not be read; its file was moved to {self.corrupt_dir}.",
                "Submit the task again.",
            )
        return record

    def refresh(self) -> None:
        """Bring the cache in line with the directory (new, changed, removed and corrupt files)."""
        st = self.root.stat()
        if st.st_mtime_ns == self._dir_mtime_ns and time.time_ns() - st.st_mtime_ns > _RACY_NS:
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
        for gone in set(self._cache) - seen:
            self._drop(gone)
        self._dir_mtime_ns = st.st_mtime_ns

    def _scan(self, seen: set[str]) -> None:
        for entry in os.scandir(self.root):
            name = entry.name
            if not name.endswith(".json") or name.startswith(".") or not entry.is_file():
                continue
            task_id = name[:-5]
            cached = self._cache.get(task_id)
            # Every write makes a new inode (rename over the old file), so a different inode is a change.
            if cached is None or cached[0][0] != entry.inode():
                try:
                    record = self._load(Path(entry.path), entry.stat())
                except FileNotFoundError:
                    continue
                if record is None:
                    continue
            seen.add(task_id)

    def all(self) -> list[TaskRecord]:
        """Every valid record (refreshed from disk)."""
        self.refresh()
        return [rec for _, rec in self._cache.values()]

    def waiting(self) -> list[TaskRecord]:
        """Queued and retrying records as last seen (call `refresh` first for other processes' changes)."""
        return list(self._waiting.values())

    def cached(self) -> list[TaskRecord]:
        """Every record as last seen, without touching the disk."""
        return [rec for _, rec in self._cache.values()]

    # -- writes ------------------------------------------------------------------------------------

    def _write(self, record: TaskRecord) -> None:
        path = self.path_for(record.task_id)
        atomic_write_bytes(path, record.model_dump_json().encode("utf-8"))
        self._put(_sig(path.stat()), record)

    def create(self, record: TaskRecord) -> None:
        """Persist a new task; the file is durable when this returns."""
        with self.locked():
            if self.path_for(record.task_id).exists():
                raise FileExistsError(record.task_id)
            self._write(record)

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

    # -- housekeeping ------------------------------------------------------------------------------

    def sweep_temp_files(self) -> int:
        """Remove temporary files whose writer is dead (or that are old); returns how many."""
        removed = 0
        now = time.time()
        for entry in os.scandir(self.root):
            if not (entry.name.startswith(".") and entry.name.endswith(_TMP_SUFFIX)):
                continue
            parts = entry.name.split(".")
            pid = int(parts[-3]) if len(parts) >= 4 and parts[-3].isdigit() else None
            alive = pid is not None and _pid_alive(pid)
            try:
                if not alive or now - entry.stat().st_mtime > 3600:
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:
                continue
        return removed


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
