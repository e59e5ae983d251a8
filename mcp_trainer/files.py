"""Durable file writes and content hashes, shared by the queue, the model directories and checkpoints.

A write goes to a temporary file in the same directory, is flushed and fsynced, then `os.replace`d over
the old file, and the directory is fsynced: a crash at any moment leaves the old file or the new one,
never a part of either. A temporary file left by a process that died is named
`.<name>.<pid>.<random>.tmp`, so that a sweep can tell whether its writer is alive.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["TMP_SUFFIX", "atomic_write", "atomic_write_bytes", "fsync_dir", "sha256_of", "temp_writer_pid"]

TMP_SUFFIX = ".tmp"


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
        with open(tmp, "wb") as f:
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
