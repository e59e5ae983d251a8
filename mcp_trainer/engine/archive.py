"""Records of tasks that ended long ago, kept compactly beside the queue: `archive/<YYYY-MM>.jsonl`.

One task record per line (the same JSON as its task file), in a file named after the month (UTC) the task
ended. A file is only ever replaced whole (files.py `atomic_write`: a temporary file, fsynced, renamed
over it), so a reader sees the old file or the new one, never a torn line. Every write runs under the
queue-wide record lock (store.py), and a record is written here before its task file is removed: a task
is always in one place or the other, or in both after a crash between the two steps, when readers take
the task file and the next run archives it again, replacing its line.

A reader keeps an index per file (task id -> summary, offset, length), trusted while the file's (inode,
mtime, size) is unchanged, and reads one record back with a `pread`. Files are opened without following
links; a link or anything but a plain file in place of a month's file is not read (maintenance sets it
aside), and a line longer than a task record may be is skipped unread, so reading costs bounded memory
whatever a file holds. Every method blocks on the disk: call them from a worker thread.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import logging
import os
import re
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pydantic import ValidationError

from mcp_trainer.engine.layout import ARCHIVE_SUFFIX, QueueLayout
from mcp_trainer.files import NotARegularFile, atomic_write, open_no_follow, real_dir
from mcp_trainer.ids import is_task_id
from mcp_trainer.records import TaskRecord, TaskStatus

__all__ = ["ArchivedTask", "TaskArchive", "ended_at", "month_of"]

log = logging.getLogger(__name__)
_MONTH_FILE = re.compile(r"\d{4}-\d{2}" + re.escape(ARCHIVE_SUFFIX))
_Sig = tuple[int, int, int]  # inode, mtime_ns, size
SetAside = Callable[[Path, str], None]


def ended_at(r: TaskRecord) -> float:
    """When a task ended (its creation time for a record that lacks it)."""
    return r.finished_at if r.finished_at is not None else r.created_at


def month_of(r: TaskRecord) -> str:
    """The month (UTC) a task ended, `YYYY-MM`: which archive file holds it."""
    return time.strftime("%Y-%m", time.gmtime(ended_at(r)))


@dataclass(frozen=True)
class ArchivedTask:
    """What a listing needs of an archived task, and where its line is."""

    task_id: str
    created_ns: int
    status: TaskStatus
    task_type: str
    user_id: str | None
    file: str
    offset: int
    length: int


def _sig(st: os.stat_result) -> _Sig:
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _lines(f: BinaryIO, max_line: int) -> Iterator[tuple[int, bytes | None]]:
    """(offset, line) for each line of `f`; None for a line longer than `max_line`, skipped unread."""
    offset = 0
    while line := f.readline(max_line):
        start = offset
        offset += len(line)
        if len(line) == max_line and not line.endswith(b"\n"):
            while line and not line.endswith(b"\n"):
                line = f.readline(max_line)
                offset += len(line)
            yield start, None
        else:
            yield start, line


def _summary(line: bytes, file: str, offset: int) -> ArchivedTask | None:
    """The listing fields of one line, or None when it is not a task record's line."""
    try:
        data = json.loads(line)
        spec = data["spec"]
        task_id, created_ns, user_id = data["task_id"], data["created_ns"], data.get("user_id")
        status = TaskStatus(data["status"])
        task_type = spec["task_type"]
    except (ValueError, KeyError, TypeError):
        return None
    valid = (
        isinstance(task_id, str)
        and is_task_id(task_id)
        and isinstance(created_ns, int)
        and isinstance(task_type, str)
        and (user_id is None or isinstance(user_id, str))
    )
    if not valid:
        return None
    return ArchivedTask(task_id, created_ns, status, task_type, user_id, file, offset, len(line))


class TaskArchive:
    """The archive of one queue: an index of every archived task, kept honest by stat checks."""

    def __init__(self, layout: QueueLayout, max_record_bytes: int) -> None:
        self.layout = layout
        self._max_line = max_record_bytes + 1  # the record and its newline
        self._guard = threading.Lock()  # short: guards the dicts below, never held across I/O
        self._files: dict[str, tuple[_Sig, dict[str, ArchivedTask], int]] = {}  # name: sig, index, bad lines
        self._unread: dict[str, str] = {}  # a month file's name: why it was not read
        self._newest: tuple[int, list[ArchivedTask]] | None = None
        self.version = 0  # bumped whenever the index changes

    # -- reads ---------------------------------------------------------------------------------------

    def _listing(self) -> dict[str, os.stat_result]:
        """The month files in archive/ (by lstat); nothing when archive/ is missing or not a directory
        of its own (a link planted there is not followed)."""
        try:
            fd = os.open(self.layout.archive_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            return {}
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return {}
            raise
        try:
            found: dict[str, os.stat_result] = {}
            with os.scandir(fd) as entries:
                for entry in entries:
                    if _MONTH_FILE.fullmatch(entry.name):
                        with contextlib.suppress(FileNotFoundError):
                            found[entry.name] = entry.stat(follow_symlinks=False)
            return found
        finally:
            os.close(fd)

    def refresh(self) -> None:
        """Bring the index in line with archive/: new, replaced and removed month files."""
        listing = self._listing()
        with self._guard:
            known = {name: sig for name, (sig, _, _) in self._files.items()}
            unread = set(self._unread)
        for name, st in listing.items():
            if known.get(name) == _sig(st):
                continue
            if not stat.S_ISREG(st.st_mode):
                self._forget(name, "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a plain file")
                continue
            self._load(name)
        for name in (set(known) | unread) - set(listing):
            self._forget(name, None)
            with self._guard:
                self._unread.pop(name, None)

    def _forget(self, name: str, why: str | None) -> None:
        with self._guard:
            if self._files.pop(name, None) is not None:
                self.version += 1
            if why is not None:
                self._unread[name] = why

    def _load(self, name: str) -> None:
        try:
            fd = open_no_follow(self.layout.archive_dir / name, os.O_RDONLY)
        except FileNotFoundError:
            self._forget(name, None)
            return
        except NotARegularFile as exc:
            self._forget(name, exc.strerror)
            return
        index: dict[str, ArchivedTask] = {}
        bad = 0
        with open(fd, "rb") as f:
            sig = _sig(os.fstat(f.fileno()))
            for offset, line in _lines(f, self._max_line):
                entry = None if line is None else _summary(line, name, offset)
                if entry is None:
                    bad += line is None or bool(line.strip())
                else:
                    index[entry.task_id] = entry
        if bad:
            log.warning("%s: %d line(s) are not task records; skipped", name, bad)
        with self._guard:
            self._files[name] = (sig, index, bad)
            self._unread.pop(name, None)
            self.version += 1

    def entry(self, task_id: str) -> ArchivedTask | None:
        """The index entry of `task_id` as last refreshed."""
        with self._guard:
            return next((idx[task_id] for _, idx, _ in self._files.values() if task_id in idx), None)

    def get(self, task_id: str) -> TaskRecord | None:
        """The archived record of `task_id` (refreshed from disk), or None when it is not archived."""
        self.refresh()
        entry = self.entry(task_id)
        return None if entry is None else self.read(entry)

    def read(self, entry: ArchivedTask) -> TaskRecord | None:
        """The full record an index entry points at; None when its line no longer validates."""
        for _ in range(2):
            data = self._pread(entry)
            if data is not None:
                try:
                    record = TaskRecord.model_validate_json(data)
                except (ValidationError, ValueError):
                    log.warning(
                        "archive/%s: the line of %s is not a valid task record", entry.file, entry.task_id
                    )
                    return None
                return record if record.task_id == entry.task_id else None
            self.refresh()  # the file changed since it was indexed
            moved = self.entry(entry.task_id)
            if moved is None:
                return None
            entry = moved
        return None

    def _pread(self, entry: ArchivedTask) -> bytes | None:
        """The line's bytes, or None when the file is not the one indexed any more."""
        try:
            fd = open_no_follow(self.layout.archive_dir / entry.file, os.O_RDONLY)
        except (FileNotFoundError, NotARegularFile):
            return None
        try:
            with self._guard:
                cached = self._files.get(entry.file)
            if cached is None or cached[0] != _sig(os.fstat(fd)):
                return None
            return os.pread(fd, entry.length, entry.offset)
        finally:
            os.close(fd)

    def newest_first(self) -> list[ArchivedTask]:
        """Every archived task as last refreshed, newest first (each task once)."""
        with self._guard:
            newest = self._newest
            if newest is not None and newest[0] == self.version:
                return newest[1]
            version = self.version
            unique: dict[str, ArchivedTask] = {}
            for name in sorted(self._files):
                unique.update(self._files[name][1])
        ordered = sorted(unique.values(), key=lambda e: (e.created_ns, e.task_id), reverse=True)
        with self._guard:
            self._newest = (version, ordered)
        return ordered

    def problems(self) -> list[str]:
        """What could not be read, in words (as last refreshed)."""
        with self._guard:
            bad = [
                f"archive/{name}: {n} line(s) that are not task records, skipped"
                for name, (_, _, n) in self._files.items()
                if n
            ]
            unread = [f"archive/{name} is {why}: not read" for name, why in self._unread.items()]
        return sorted(bad + unread)

    def strays(self) -> list[Path]:
        """Entries named as month files that are not plain files (as last refreshed)."""
        with self._guard:
            return [self.layout.archive_dir / name for name in sorted(self._unread)]

    # -- writes --------------------------------------------------------------------------------------

    def put(self, records: Iterable[TaskRecord], set_aside: SetAside) -> list[str]:
        """Write `records` (ended tasks) into their months' files, each replacing any line of the same
        task; durable when this returns. Call it under the store's record lock. Something other than a
        plain file in place of a month's file is handed to `set_aside` first. Returns the files written."""
        by_month: dict[str, list[TaskRecord]] = {}
        for r in records:
            if not r.status.is_terminal():
                raise ValueError(f"task {r.task_id} is {r.status.value}: only ended tasks are archived")
            by_month.setdefault(month_of(r), []).append(r)
        real_dir(self.layout.archive_dir)
        written = []
        for month, batch in sorted(by_month.items()):
            path = self.layout.archive_file(month)
            replaced = {r.task_id for r in batch}
            try:
                old = open_no_follow(path, os.O_RDONLY)
            except FileNotFoundError:
                old = None
            except NotARegularFile as exc:
                set_aside(path, f"{path.name} in archive/ is {exc.strerror}, not an archive file")
                old = None
            try:
                atomic_write(path, functools.partial(self._fill, old=old, batch=batch, replaced=replaced))
            finally:
                if old is not None:
                    os.close(old)
            written.append(path.name)
        return written

    def _fill(self, f: BinaryIO, *, old: int | None, batch: list[TaskRecord], replaced: set[str]) -> None:
        """Copy the old file's lines but those of `replaced` (and any too long to be a record), then add
        `batch`."""
        if old is not None:
            with open(old, "rb", closefd=False) as src:
                for _, line in _lines(src, self._max_line):
                    if line is None or not line.strip():
                        continue
                    summary = _summary(line, "", 0)
                    if summary is not None and summary.task_id in replaced:
                        continue
                    f.write(line if line.endswith(b"\n") else line + b"\n")
        for r in batch:
            f.write(r.model_dump_json().encode("utf-8") + b"\n")
