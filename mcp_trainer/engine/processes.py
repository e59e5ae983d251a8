"""Processes and process groups: whether they live, and ending them (a task is one process group)."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from pathlib import Path

import psutil

from mcp_trainer.engine.layout import QueueLayout
from mcp_trainer.records import TaskRecord

__all__ = [
    "WORKER_NAME",
    "end_leftover_worker",
    "is_this_queues_worker",
    "kill_process_group",
    "pid_alive",
    "process_group_alive",
]

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


WORKER_NAME = b"mcpt-worker"  # a worker's process name (/proc/<pid>/comm), set as it starts


def is_this_queues_worker(layout: QueueLayout, record: TaskRecord) -> bool:
    """Whether the process a record names is provably that task's worker of this queue: it was started
    when the record says (to the half second), it leads its own process group, it carries a worker's
    name, and its standard output is that task's log file in this queue. A record written by anyone
    else, naming any other process, fails one of these."""
    pid = record.worker_pid
    if pid is None or record.worker_started_at is None:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False  # already dead, waiting to be reaped
        if abs(proc.create_time() - record.worker_started_at) >= 0.5 or os.getpgid(pid) != pid:
            return False
        if proc.name() != WORKER_NAME.decode():
            return False
        return str(Path(f"/proc/{pid}/fd/1").readlink()) == str(layout.log_file(record.task_id))
    except (psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError, PermissionError, OSError):
        return False


def end_leftover_worker(layout: QueueLayout, record: TaskRecord) -> None:
    """SIGKILL the process group of a task's worker whose owner died or does not respond, if it is
    provably that worker."""
    if is_this_queues_worker(layout, record):
        assert record.worker_pid is not None
        log.warning(
            "killing worker %d of task %s (its owner is gone or does not respond)",
            record.worker_pid,
            record.task_id,
        )
        kill_process_group(record.worker_pid)
    elif record.worker_pid is not None:
        log.info(
            "task %s names pid %d, which is not its worker: left alone", record.task_id, record.worker_pid
        )
