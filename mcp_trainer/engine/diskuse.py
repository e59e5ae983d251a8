"""Disk use of the queue's folders and of the models directory, and the free space where each lives.

Sizes are apparent sizes (`st_size`) read with lstat: no link is followed (a link counts as a file of its
own size), and a folder is walked without recursion, so a deep or hostile tree costs no stack. Blocking.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from mcp_trainer.engine.layout import TASK_SUFFIX, QueueLayout
from mcp_trainer.errors import InvalidInputError
from mcp_trainer.ids import check_model_id
from mcp_trainer.views.maintenance import DiskReport, DiskUse, ModelSize, ModelsUse

__all__ = ["disk_report", "free_bytes", "tree_usage"]

_LARGEST = 10


def tree_usage(path: Path) -> tuple[int, int]:
    """(files, bytes) under `path`, or of `path` itself when it is not a directory; (0, 0) when missing."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return 0, 0
    if not stat.S_ISDIR(st.st_mode):
        return 1, st.st_size
    files = size = 0
    stack = [str(path)]
    while stack:
        try:
            entries = os.scandir(stack.pop())
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        with entries:
            for entry in entries:
                try:
                    est = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if stat.S_ISDIR(est.st_mode):
                    stack.append(entry.path)
                else:
                    files += 1
                    size += est.st_size
    return files, size


def free_bytes(path: Path) -> int | None:
    """Free space for this user on the disk that holds `path` (or its nearest existing parent)."""
    for place in (path, *path.parents):
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            st = os.statvfs(place)
            return st.f_bavail * st.f_frsize
    return None


def _use(path: Path) -> DiskUse:
    files, size = tree_usage(path)
    return DiskUse(path=str(path), files=files, bytes=size, free_bytes=free_bytes(path))


def _task_files(layout: QueueLayout) -> DiskUse:
    files = size = 0
    with os.scandir(layout.root) as entries:
        for entry in entries:
            if entry.name.endswith(TASK_SUFFIX) and not entry.name.startswith("."):
                with contextlib.suppress(OSError):
                    size += entry.stat(follow_symlinks=False).st_size
                    files += 1
    return DiskUse(path=str(layout.root), files=files, bytes=size, free_bytes=free_bytes(layout.root))


def _models(models_dir: Path) -> ModelsUse:
    total_files = total = 0
    sizes: list[ModelSize] = []
    with contextlib.suppress(FileNotFoundError, NotADirectoryError), os.scandir(models_dir) as entries:
        for entry in entries:
            files, size = tree_usage(Path(entry.path))
            total_files += files
            total += size
            with contextlib.suppress(InvalidInputError, OSError):
                if entry.is_dir(follow_symlinks=False):
                    sizes.append(ModelSize(model_id=check_model_id(entry.name), bytes=size))
    sizes.sort(key=lambda m: (-m.bytes, m.model_id))
    return ModelsUse(
        path=str(models_dir),
        files=total_files,
        bytes=total,
        free_bytes=free_bytes(models_dir),
        models=len(sizes),
        largest=sizes[:_LARGEST],
    )


def disk_report(layout: QueueLayout, models_dir: Path) -> DiskReport:
    """Bytes and file counts of the task files, logs, work folders, datasets, archive, corrupt/ and
    models."""
    return DiskReport(
        task_files=_task_files(layout),
        logs=_use(layout.logs_dir),
        work=_use(layout.work_dir),
        datasets=_use(layout.datasets_dir),
        archive=_use(layout.archive_dir),
        corrupt=_use(layout.corrupt_dir),
        models=_models(models_dir),
    )
