"""Processes and process groups: whether they live, and ending them (a task is one process group)."""

from __future__ import annotations

import contextlib
import logging
import os
import signal

import psutil

__all__ = ["end_leftover_worker", "kill_process_group", "pid_alive", "process_group_alive"]

log = logging.getLogger(__name__)


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (it may belong to another user)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def process_group_alive(pgid: int) -> bool:
    """Whether any live (non-zombie) process is in group `pgid`."""
    for pid in psutil.pids():
        try:
            if os.getpgid(pid) == pgid and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                return True
        except (ProcessLookupError, psutil.NoSuchProcess, PermissionError):
            continue
    return False


def kill_process_group(pid: int, sig: int = signal.SIGKILL) -> None:
    """Send `sig` to the group led by `pid` and to `pid` itself; a vanished target is not an error."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def end_leftover_worker(pid: int | None, started_at: float | None, task_id: str) -> None:
    """SIGKILL the process group of a worker that outlived its owner, if `pid` is still that worker
    (its start time tells a reused pid apart)."""
    if pid is None:
        return
    try:
        proc = psutil.Process(pid)
        same = started_at is None or abs(proc.create_time() - started_at) < 0.5
        if proc.status() == psutil.STATUS_ZOMBIE:
            return  # already dead, waiting to be reaped
    except psutil.NoSuchProcess:
        return
    if same:
        log.warning("killing worker %d left running by a dead owner (task %s)", pid, task_id)
        kill_process_group(pid)
