"""Trials of one search in several processes that share its study (the journal file, under its lock).

Helpers are forked from the task's worker: they inherit the loaded data and the objective without
pickling, and they stay in the worker's process group, so a cancel ends them with it. Each helper asks
the kernel to kill it if the worker dies. The total number of trials is shared through the study:
every process stops once the study holds `n_trials` trials (a helper may start one more before it sees
that, so a search can end with up to `workers - 1` extra trials).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
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


def _helper(
    objective: Objective,
    reopen: Callable[[int], optuna.Study],
    index: int,
    n_trials: int,
    timeout_s: float | None,
) -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG: die with the worker
    # One BLAS/OpenMP thread, inherited from the worker (see run_parallel): not set again here.
    _optimize(reopen(index), objective, n_trials, timeout_s, ())


def _optimize(
    study: optuna.Study,
    objective: Objective,
    n_trials: int,
    timeout_s: float | None,
    callbacks: Sequence[Callback],
) -> None:
    study.optimize(
        objective,
        timeout=timeout_s,
        callbacks=[optuna.study.MaxTrialsCallback(n_trials, states=None), *callbacks],
    )


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
    """Run the search in this process plus `workers - 1` forked helpers until the study holds `n_trials`."""
    # fork, not spawn: helpers need the objective's closure and data, and must not re-import the stack.
    # The worker's only other thread (its stop listener) holds no lock a helper could need.
    ctx = multiprocessing.get_context("fork")
    helpers: list[Any] = []
    # One BLAS/OpenMP thread per process: the processes already fill the CPUs. Set before forking and
    # inherited, never set again in a helper (see threads.py: OpenBLAS restarts its pool after a fork).
    with limit_threads(1):
        for index in range(1, workers):
            process = ctx.Process(
                target=_helper, args=(objective, reopen, index, n_trials, timeout_s), daemon=True
            )
            process.start()
            helpers.append(process)
        try:
            _optimize(study, objective, n_trials, timeout_s, callbacks)
        except BaseException:  # a stop request or a failure: the helpers' trials are not wanted
            for process in helpers:
                process.kill()
            raise
        finally:
            for process in helpers:
                process.join()
                if process.exitcode not in (0, -signal.SIGKILL):
                    log.warning("a search helper exited with code %s", process.exitcode)
