"""Durable file writes and content hashes, shared by the queue, the model directories and checkpoints.

A write goes to a temporary file in the same directory, is flushed and fsynced, then `os.replace`d over
the old file, and the directory is fsynced: a crash at any moment leaves the old file or the new one,
never a part of either. A temporary file left by a process that died is named
`.<name>.<pid>.<random>.tmp`, so that a sweep can tell whether its writer is alive.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
import shutil
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, TypeVar

__all__ = [
    "TMP_DIR_PREFIX",
    "TMP_SUFFIX",
    "NotARegularFile",
    "atomic_write",
    "atomic_write_bytes",
    "fsync_dir",
    "open_no_follow",
    "read_capped",
    "real_dir",
    "replace_dir",
    "sha256_of",
    "temp_writer_pid",
]

TMP_SUFFIX = ".tmp"
TMP_DIR_PREFIX = ".tmp-"  # a folder being written by `replace_dir`: `.tmp-<name>-<pid>`
T = TypeVar("T")


def fsync_dir(path: Path) -> None:
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
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{TMP_SUFFIX}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        with open(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def temp_writer_pid(name: str) -> int | None:
    """The pid that wrote a temporary file named by `atomic_write`, or None if `name` is not one."""
    if not (name.startswith(".") and name.endswith(TMP_SUFFIX)):
        return None
    parts = name.split(".")
    return int(parts[-3]) if len(parts) >= 4 and parts[-3].isdigit() else None


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class NotARegularFile(OSError):
    """A path that should hold a plain file holds a link, a directory, a FIFO or a device, or a file larger
    than a reader allows."""


def open_no_follow(path: Path, flags: int, mode: int = 0o644) -> int:
    """`os.open` that follows no symbolic link at `path` nor at its directory (a link planted by whoever
    else can write there must not redirect a write or a read to a file elsewhere). A link raises
    NotARegularFile; so does anything but a plain file."""
    parent = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        fd = os.open(path.name, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode, dir_fd=parent)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotARegularFile(errno.ELOOP, "a symbolic link", str(path)) from None
        raise
    finally:
        os.close(parent)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise NotARegularFile(errno.EINVAL, "not a regular file", str(path))
    os.set_blocking(fd, True)
    return fd


def read_capped(path: Path, max_bytes: int) -> bytes:
    """The content of the plain file at `path` (no link followed), refused beyond `max_bytes`."""
    fd = open_no_follow(path, os.O_RDONLY)
    with open(fd, "rb") as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise NotARegularFile(errno.EFBIG, f"larger than {max_bytes} bytes", str(path))
    return data


def real_dir(path: Path) -> Path:
    """Make sure `path` is a directory of its own: a symbolic link there, planted to send writes
    elsewhere, is removed, anything else that is not a directory is renamed aside
    (`<name>.not-a-directory.<ns>`), and a directory is made in its place. Returns `path`."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        path.mkdir(parents=True, exist_ok=True)
        return path
    if stat.S_ISDIR(st.st_mode):
        return path
    if stat.S_ISLNK(st.st_mode):
        path.unlink()
    else:
        os.replace(path, path.with_name(f"{path.name}.not-a-directory.{time.time_ns()}"))
    path.mkdir(exist_ok=True)
    return path


def replace_dir(final: Path, fill: Callable[[Path], T], *, make_parent: bool = True) -> T:
    """Have `fill` write a folder whole, then put it in place of `final` (an older one, say of an
    earlier attempt, is removed): readers see the old folder or the complete new one, never a part. It is
    written as `.tmp-<name>-<pid>` beside `final` (so that a sweep can tell a dead writer's), its files
    fsynced, then renamed. Returns what `fill` returned. Without `make_parent`, a parent folder that is
    gone raises FileNotFoundError rather than being made again."""
    parent = real_dir(final.parent) if make_parent else final.parent
    tmp = parent / f"{TMP_DIR_PREFIX}{final.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        result = fill(tmp)
        for path in [*tmp.rglob("*"), tmp]:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | (os.O_DIRECTORY if path.is_dir() else 0))
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        if os.path.lexists(final):
            old = parent / f"{TMP_DIR_PREFIX}{final.name}.old-{os.getpid()}"
            os.rename(final, old)
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old, ignore_errors=True)
            else:  # a link or a file planted in its place: removed, never followed
                old.unlink()
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_dir(parent)
    return result
