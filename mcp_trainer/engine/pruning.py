"""Removing a task's folders, `work/<task_id>[/<part>]` or `datasets/<task_id>`, safely beside processes
that share the queue: what queue maintenance (maintenance.py) and cleanup tasks (cleanup.py) both use.

A folder is first renamed aside (`.pruning-<task_id>.<part>.<pid>.<ns>` in the same directory) under the
queue's record lock, after the task's record is read again there, then removed outside the lock: a task
that another process changes meanwhile (a retry) keeps its files, and the lock is held for a rename, not
for a large tree. No link is followed: folders are opened with O_NOFOLLOW relative to their parent, and a
link planted in a folder's place is removed as a link. Blocking: run it in a worker thread.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path

from mcp_trainer.engine.diskuse import tree_usage
from mcp_trainer.engine.layout import QueueLayout
from mcp_trainer.engine.store import TaskStore
from mcp_trainer.errors import TaskNotFoundError
from mcp_trainer.records import TaskRecord

__all__ = ["Due", "TaskFolders", "remove_if_due"]

Due = Callable[[TaskRecord | None], bool]  # given the record read again under the lock (None: no task)


class TaskFolders:
    """The folders named after tasks in one directory of the queue (`work/` or `datasets/`): measured,
    renamed aside and removed without following links."""

    def __init__(self, layout: QueueLayout, base: Path) -> None:
        self.layout = layout
        self.base = base

    @classmethod
    def work(cls, layout: QueueLayout) -> TaskFolders:
        return cls(layout, layout.work_dir)

    @classmethod
    def datasets(cls, layout: QueueLayout) -> TaskFolders:
        return cls(layout, layout.datasets_dir)

    def _open(self, name: str, dir_fd: int | None = None) -> int | None:
        try:
            path = name if dir_fd is not None else self.base
            return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return None
            raise

    def path(self, task_id: str, part: str | None) -> Path | None:
        """`<base>/<task_id>[/<part>]` when it is a directory reached through directories only."""
        folder = self.base / task_id
        target = folder if part is None else folder / part
        for p in (self.base, folder, target):
            try:
                if not stat.S_ISDIR(os.lstat(p).st_mode):
                    return None
            except FileNotFoundError:
                return None
        return target

    def size(self, task_id: str, part: str | None) -> int | None:
        target = self.path(task_id, part)
        return None if target is None else tree_usage(target)[1]

    def set_aside(self, task_id: str, part: str | None) -> Path | None:
        """Rename `<base>/<task_id>` (or its `part`) to a `.pruning-` name in the base; None when absent."""
        trash = self.layout.pruning_path(task_id, part or "all", self.base)
        root = self._open("")
        if root is None:
            return None
        try:
            if part is None:
                os.rename(task_id, trash.name, src_dir_fd=root, dst_dir_fd=root)
                return trash
            folder = self._open(task_id, root)
            if folder is None:
                return None
            try:
                if not stat.S_ISDIR(os.stat(part, dir_fd=folder, follow_symlinks=False).st_mode):
                    return None
                os.rename(part, trash.name, src_dir_fd=folder, dst_dir_fd=root)
                return trash
            finally:
                os.close(folder)
        except FileNotFoundError:
            return None
        finally:
            os.close(root)

    @staticmethod
    def discard(trash: Path) -> int:
        """Remove what `set_aside` renamed (a link as a link); returns its bytes."""
        size = tree_usage(trash)[1]
        try:
            if stat.S_ISDIR(os.lstat(trash).st_mode):
                shutil.rmtree(trash)  # fd-based on Linux: links inside are removed, never followed
            else:
                trash.unlink()
        except FileNotFoundError:
            pass
        return size


def remove_if_due(
    store: TaskStore, folders: TaskFolders, task_id: str, part: str | None, due: Due, *, dry_run: bool
) -> int | None:
    """Remove `<base>/<task_id>[/<part>]` if `due` holds for the task's record read again under the
    record lock; its bytes, or None when there was nothing to remove (absent, or not due). A dry run only
    measures it (and does not ask `due`: the caller chose it from what it read)."""
    if dry_run:
        return folders.size(task_id, part)
    with store.locked():
        try:
            current: TaskRecord | None = store.get(task_id)
        except TaskNotFoundError:
            current = None
        trash = folders.set_aside(task_id, part) if due(current) else None
    return None if trash is None else folders.discard(trash)
