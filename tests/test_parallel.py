"""Trials of one study in forked helper processes (trainers/parallel.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import optuna
import pytest

from mcp_trainer.trainers.study import attach_study, open_study
from mcp_trainer.trainers.tabular.parallel import run_parallel


@pytest.fixture(autouse=True)
def quiet_optuna() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def _study(work_dir: Path) -> optuna.Study:
    return open_study(work_dir, study_name="task_x", direction="minimize", seed=0)


def _run(
    work_dir: Path,
    study: optuna.Study,
    objective: Callable[[optuna.Trial], float],
    *,
    n_trials: int,
    workers: int,
    timeout_s: float | None = None,
    callbacks: Sequence[Callable[[optuna.Study, optuna.trial.FrozenTrial], None]] = (),
) -> None:
    run_parallel(
        study,
        objective,
        n_trials=n_trials,
        workers=workers,
        timeout_s=timeout_s,
        reopen=lambda i: attach_study(work_dir, study_name="task_x", seed=i),
        callbacks=callbacks,
    )


def test_helpers_run_trials_of_the_same_study_with_one_blas_thread_and_start_no_thread_pool(
    tmp_path: Path,
) -> None:
    # OpenBLAS rebuilds its thread pool after a fork; a limit set, or a BLAS call made, in the child would
    # start threads that busy-wait beside the trials. A forked helper has exactly one thread to begin with,
    # so any extra thread seen after a matrix product in a trial was started by that product.
    study = _study(tmp_path)
    parent = os.getpid()
    matrix = np.random.default_rng(0).random((300, 300))

    def objective(trial: optuna.Trial) -> float:
        float((matrix @ matrix).sum())
        time.sleep(0.03)  # long enough that the helper, which starts later, gets trials too
        trial.set_user_attr("pid", os.getpid())
        trial.set_user_attr("threads", len(list(Path("/proc/self/task").iterdir())))
        return trial.suggest_float("x", -1.0, 1.0) ** 2

    _run(tmp_path, study, objective, n_trials=12, workers=2)

    trials = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    assert len(trials) == 12
    helper_trials = [t for t in trials if t.user_attrs["pid"] != parent]
    assert helper_trials, "no trial ran in the helper"
    assert {t.user_attrs["threads"] for t in helper_trials} == {1}


def test_a_parallel_search_ends_with_exactly_n_trials_counting_those_already_in_the_study(
    tmp_path: Path,
) -> None:
    # The main process dwells in its callback after each trial (as progress reporting does) while the
    # helpers run quick trials: stopping on the study's count let it start one more trial after the helpers
    # had reached the total.
    def quick(trial: optuna.Trial) -> float:
        return trial.suggest_float("x", -1.0, 1.0) ** 2

    study = _study(tmp_path)
    study.optimize(quick, n_trials=5)  # a resumed search's finished trials
    _run(tmp_path, study, quick, n_trials=20, workers=3, callbacks=[lambda study, trial: time.sleep(0.3)])
    assert len(study.get_trials(deepcopy=False)) == 20


def test_no_trial_starts_after_the_deadline(tmp_path: Path) -> None:
    study = _study(tmp_path)

    def slow(trial: optuna.Trial) -> float:
        time.sleep(0.2)
        return trial.suggest_float("x", -1.0, 1.0) ** 2

    started = time.monotonic()
    _run(tmp_path, study, slow, n_trials=1000, workers=2, timeout_s=0.5)
    trials = study.get_trials(deepcopy=False)
    assert 2 <= len(trials) <= 8  # 2 processes x 0.5 s / 0.2 s a trial, plus the ones in flight
    assert all(t.state is optuna.trial.TrialState.COMPLETE for t in trials)
    assert time.monotonic() - started < 5


_FORKSERVER_LIKE = """
import multiprocessing, os, sys
import numpy, scipy.linalg, sklearn.ensemble  # numpy's and scipy's OpenBLAS, scikit-learn's OpenMP
from mcp_trainer.trainers.threads import limit_threads, one_blas_thread

one_blas_thread()  # as the forkserver does before it forks any worker


def worker(conn):
    counts = [len(os.listdir("/proc/self/task"))]
    with limit_threads(1):  # as a parallel search does in the worker
        counts.append(len(os.listdir("/proc/self/task")))
    counts.append(len(os.listdir("/proc/self/task")))
    conn.send(counts)


parent, child = multiprocessing.get_context("fork").Pipe()
process = multiprocessing.get_context("fork").Process(target=worker, args=(child,))
process.start()
print(parent.recv())
process.join()
"""


def test_limiting_and_restoring_threads_in_a_worker_starts_no_thread() -> None:
    # threadpoolctl's threadpool_limits restores every library it sees, BLAS included, and setting
    # OpenBLAS in a forked process restarted its pool: two busy-waiting threads after every parallel search.
    out = subprocess.run(
        [sys.executable, "-c", _FORKSERVER_LIKE], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "[1, 1, 1]", out.stdout + out.stderr
