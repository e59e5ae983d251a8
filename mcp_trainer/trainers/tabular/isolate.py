"""Run one unit of work (a trial's cross-validation) in a forked child so that it can be ended.

A Python-level timeout cannot interrupt a long C call (an SVC fit ignores signals handlers until it
returns), so a trial with a time limit runs in a child process that is killed when the limit passes or
the task is asked to stop. The child is forked from the worker (the data and models are inherited, not
copied or re-imported) and stays in the task's process group.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import signal
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, TypeVar

__all__ = ["TrialTimeout", "call_with_limit"]

T = TypeVar("T")


class TrialTimeout(Exception):
    """The unit of work ran past its time limit and was ended."""


def _child(fn: Callable[[], Any], conn: Connection) -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG: die with the worker
    try:
        conn.send(("ok", fn()))
    except BaseException as exc:
        conn.send(("error", exc))
    finally:
        conn.close()


def call_with_limit(fn: Callable[[], T], limit_s: float, check_stop: Callable[[], None]) -> T:
    """`fn()` computed in a forked child. Raises TrialTimeout past `limit_s`; `check_stop` is called while
    waiting and may raise (a stop request), which kills the child too."""
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_child, args=(fn, child), daemon=True)
    process.start()
    child.close()
    deadline = time.monotonic() + limit_s
    try:
        while not parent.poll(min(0.1, max(0.0, deadline - time.monotonic()))):
            check_stop()
            if time.monotonic() >= deadline:
                raise TrialTimeout(f"ran past its limit of {limit_s:g} s and was ended")
            if not process.is_alive() and not parent.poll():
                raise RuntimeError(f"the trial's process died (exit code {process.exitcode})")
        kind, value = parent.recv()
    finally:
        if process.is_alive():
            process.kill()
        process.join()
        parent.close()
    if kind == "error":
        raise value
    result: T = value
    return result
