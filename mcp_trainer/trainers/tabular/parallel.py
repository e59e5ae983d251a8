"""Trials of one search in several processes that share its study (the journal file, under its lock).

Helpers are forked from the task's worker: they inherit the loaded data and the objective without
pickling, and they stay in the worker's process group, so a cancel ends them with it. Each helper asks
the kernel to kill it if the worker dies. The processes share one count of the trials still to run,
and each claims one before it starts a trial, so the study ends with exactly `n_trials` trials (counting
the stopping condition through the study instead let two processes that finished at once both start one
more).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Sequence
from typing import Any

import optuna

from mcp_trainer.trainers.threads import limit_threads

__all__ = ["available_cpus", "run_parallel"]

log = logging.getLogger(__name__)
Objective = Callable[[optuna.Trial], float]
Callback = Callable[[optuna.Study, optuna.trial.FrozenTrial], None]


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class _Slots:
    """How many trials are left to start, shared by the processes forked after it is made."""

    def __init__(self, ctx: Any, count: int) -> None:
        self._left = ctx.Value("i", count)

    def claim(self) -> bool:
        with self._left.get_lock():
            if self._left.value <= 0:
                return False
            self._left.value -= 1
            return True


def _helper(
    objective: Objective,
    reopen: Callable[[int], optuna.Study],
    index: int,
    slots: _Slots,
    deadline: float | None,
) -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG: die with the worker
    # One BLAS/OpenMP thread, inherited from the worker (see run_parallel): not set again here.
    _optimize(reopen(index), objective, slots, deadline, ())


def _optimize(
    study: optuna.Study,
    objective: Objective,
    slots: _Slots,
    deadline: float | None,
    callbacks: Sequence[Callback],
) -> None:
    """Trials one at a time while there are slots left and the deadline (time.monotonic) has not passed."""
    while (deadline is None or time.monotonic() < deadline) and slots.claim():
        study.optimize(objective, n_trials=1, callbacks=list(callbacks))


def run_parallel(
    study: optuna.Study,
    objective: Objective,
    *,
    n_trials: int,
    workers: int,
    timeout_s: float | None,
    reopen: Callable[[int], optuna.Study],
    callbacks: Sequence[Callback] = (),
) -> None:
    """Run the search in this process plus `workers - 1` forked helpers until the study holds `n_trials`
    trials, starting none once `timeout_s` has passed."""
    # fork, not spawn: helpers need the objective's closure and data, and must not re-import the stack.
    # The worker's only other thread (its stop listener) holds no lock a helper could need.
    ctx = multiprocessing.get_context("fork")
    slots = _Slots(ctx, n_trials - len(study.get_trials(deepcopy=False)))
    # One deadline for every process: CLOCK_MONOTONIC is system-wide.
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    helpers: list[Any] = []
    # One BLAS/OpenMP thread per process: the processes already fill the CPUs. Set before forking and
    # inherited, never set again in a helper (see threads.py: OpenBLAS restarts its pool after a fork).
    with limit_threads(1):
        for index in range(1, workers):
            process = ctx.Process(
                target=_helper, args=(objective, reopen, index, slots, deadline), daemon=True
            )
            process.start()
            helpers.append(process)
        try:
            _optimize(study, objective, slots, deadline, callbacks)
        except BaseException:  # a stop request or a failure: the helpers' trials are not wanted
            for process in helpers:
                process.kill()
            raise
        finally:
            for process in helpers:
                process.join()
                if process.exitcode not in (0, -signal.SIGKILL):
                    log.warning("a search helper exited with code %s", process.exitcode)
