"""Ownership of a queue: exactly one process executes the tasks of a queue directory.

The owner holds an exclusive `flock` on `.owner.lock`. The kernel drops the lock when that process dies,
however it dies, so another process sharing the queue takes over; a marker file could not tell a dead
owner from a live one. The lock file's content names the holder (pid, concurrency limit) for others.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time

from mcp_trainer.engine.layout import QueueLayout
from mcp_trainer.engine.processes import pid_alive

__all__ = ["OwnerInfo", "OwnerLock"]

OwnerInfo = dict[str, float]


_INFO_BYTES = 128  # the owner's info is written at this fixed width


class OwnerLock:
    """A non-blocking exclusive flock on the queue's owner lock file."""

    def __init__(self, layout: QueueLayout, limit: int) -> None:
        self.path = layout.owner_lock
        self.limit = limit
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        """Take the lock if nobody holds it; True while this process holds it. Never blocks."""
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        self.beat()
        return True

    def beat(self) -> None:
        """Say this owner is alive: the lock file's `beat` is the time of the last call (blocking)."""
        if self._fd is None:
            return
        info = json.dumps({"pid": os.getpid(), "limit": self.limit, "beat": round(time.time(), 3)}).encode()
        # Overwritten in place at a fixed width (JSON allows the trailing spaces), never truncated first:
        # a reader between a truncate and a write saw an empty file, so no owner, while there was one.
        os.pwrite(self._fd, info.ljust(_INFO_BYTES), 0)

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def holder_info(self) -> OwnerInfo:
        """The pid, concurrency limit and last heartbeat (`beat`, a time) the current owner wrote; empty
        when nobody owns the queue."""
        info: object = {}
        for _ in range(3):  # a read that meets a write in flight (from an older version: a truncate) again
            try:
                info = json.loads(self.path.read_text() or "{}")
                break
            except FileNotFoundError:
                return {}
            except ValueError:
                time.sleep(0.002)
        if not isinstance(info, dict) or not isinstance(info.get("pid"), int):
            return {}
        if not pid_alive(info["pid"]):
            return {}  # written by an owner that died; nobody executes until another takes over
        return {k: v for k, v in info.items() if isinstance(v, int | float) and not isinstance(v, bool)}
