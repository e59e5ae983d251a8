"""Taking a kernel `flock` without waiting forever, and naming who holds it.

A process stopped (SIGSTOP, a debugger) or hung while it holds the queue's record lock would otherwise
block every other process's writes, submits and cancels included, until it resumes: they wait at most
`timeout_s` and then fail with an error that names the holder.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from pathlib import Path

from mcp_trainer.errors import TrainerError

__all__ = ["LOCK_WAIT_S", "acquire", "holders"]

LOCK_WAIT_S = 15.0  # far beyond any hold of the record lock (milliseconds; a full rescan of a huge queue)
_FIRST_NAP_S = 0.0005
_LONGEST_NAP_S = 0.005  # a released lock is taken within this


def acquire(fd: int, path: Path, timeout_s: float | None = None) -> None:
    """Take an exclusive flock on `fd` (the file at `path`), waiting at most `timeout_s` (LOCK_WAIT_S);
    TrainerError naming the holding process past that."""
    timeout_s = LOCK_WAIT_S if timeout_s is None else timeout_s
    deadline = time.monotonic() + timeout_s
    nap = _FIRST_NAP_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
        if time.monotonic() >= deadline:
            break
        time.sleep(nap)
        nap = min(_LONGEST_NAP_S, nap * 2)
    held_by = ", ".join(f"pid {p}" for p in sorted(holders(path))) or "another process"
    raise TrainerError(
        f"The queue's records have been locked by {held_by} for over {timeout_s:g} s ({path}): that "
        "process is stopped or hung. Nothing was changed.",
        "Try again; if it persists, resume or end that process (the queue recovers from its death).",
    )


def holders(path: Path) -> set[int]:
    """The pids that hold a flock on the file at `path`, from /proc/locks (empty where unreadable)."""
    try:
        st = path.stat()
        text = Path("/proc/locks").read_text()
    except OSError:
        return set()
    wanted = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    found: set[int] = set()
    for line in text.splitlines():
        parts = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 00:2a:5678 0 EOF"; a waiter's line has "->" after the number
        if "->" in parts or len(parts) < 6 or parts[1] != "FLOCK":
            continue
        with contextlib.suppress(ValueError):
            if parts[5] == wanted:
                found.add(int(parts[4]))
    return found
