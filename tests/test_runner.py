"""A search's trials in supervised helper processes (trainers/tabular/runner.py)."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest

from mcp_trainer.trainers.base import StopRequested
from mcp_trainer.trainers.study import attach_study, open_study
from mcp_trainer.trainers.tabular.runner import RunOutcome, SearchRunner, Snapshot

Objective = Callable[[optuna.Trial], float]


@pytest.fixture(autouse=True)
def quiet_optuna() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def _study(work_dir: Path) -> optuna.Study:
    return open_study(work_dir, study_name="task_x", direction="minimize", seed=0)


def _run(
    work_dir: Path,
    study: optuna.Study,
    objective: Objective,
    *,
    n_trials: int,
    workers: int,
    timeout_s: float | None = None,
    limit_s: float = 3600.0,
    on_tick: Callable[[Snapshot], None] = lambda snap: None,
    stop: threading.Event | None = None,
    finish: threading.Event | None = None,
) -> RunOutcome:
    return SearchRunner(
        study,
        objective,
        reopen=lambda i: attach_study(work_dir, study_name="task_x", seed=i),
        n_trials=n_trials,
        workers=workers,
        timeout_s=timeout_s,
        trial_limit_s=lambda durations: limit_s,
        on_tick=on_tick,
        should_stop=(stop or threading.Event()).is_set,
        should_finish=(finish or threading.Event()).is_set,
    ).run()


def _states(study: optuna.Study) -> list[optuna.trial.TrialState]:
    return [t.state for t in study.get_trials(deepcopy=False)]


def _children() -> list[Any]:
    return [p for p in multiprocessing.active_children() if p.is_alive()]


def test_helpers_run_every_trial_of_the_same_study_with_one_blas_thread_and_start_no_thread_pool(
    tmp_path: Path,
) -> None:
    # OpenBLAS rebuilds its thread pool after a fork; a limit set, or a BLAS call made, in the child would
    # start threads that busy-wait beside the trials. A forked helper has exactly one thread to begin with,
    # so any extra thread seen after a matrix product in a trial was started by that product.
    study = _study(tmp_path)
    matrix = np.random.default_rng(0).random((300, 300))

    def objective(trial: optuna.Trial) -> float:
        float((matrix @ matrix).sum())
        time.sleep(0.03)
        trial.set_user_attr("pid", os.getpid())
        trial.set_user_attr("threads", len(list(Path("/proc/self/task").iterdir())))
        return trial.suggest_float("x", -1.0, 1.0) ** 2

    outcome = _run(tmp_path, study, objective, n_trials=12, workers=2)

    trials = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    assert len(trials) == 12
    assert os.getpid() not in {t.user_attrs["pid"] for t in trials}  # the supervisor runs no trial
    assert len({t.user_attrs["pid"] for t in trials}) == 2
    assert {t.user_attrs["threads"] for t in trials} == {1}
    assert outcome.warnings == [] and outcome.ended == []


def test_a_search_ends_with_exactly_n_trials_counting_those_already_in_the_study(tmp_path: Path) -> None:
    # The supervisor dwells in its progress report while the helpers run quick trials.
    def quick(trial: optuna.Trial) -> float:
        return trial.suggest_float("x", -1.0, 1.0) ** 2

    study = _study(tmp_path)
    study.optimize(quick, n_trials=5)  # a resumed search's finished trials
    _run(tmp_path, study, quick, n_trials=20, workers=3, on_tick=lambda snap: time.sleep(0.3))
    assert len(study.get_trials(deepcopy=False)) == 20


def test_at_the_deadline_no_trial_starts_and_the_ones_in_flight_end(tmp_path: Path) -> None:
    study = _study(tmp_path)

    def slow(trial: optuna.Trial) -> float:
        time.sleep(0.3)
        return trial.suggest_float("x", -1.0, 1.0) ** 2

    started = time.monotonic()
    outcome = _run(tmp_path, study, slow, n_trials=1000, workers=2, timeout_s=1.0)
    trials = study.get_trials(deepcopy=False)
    assert outcome.timed_out
    assert 4 <= len(trials) <= 10  # 2 processes x 1 s / 0.3 s a trial, plus the ones in flight
    assert optuna.trial.TrialState.RUNNING not in _states(study)
    assert all("timeout_s" in e.why for e in outcome.ended)
    assert time.monotonic() - started < 5
    assert _children() == []


def test_a_trial_past_its_limit_is_ended_and_counted_failed_and_the_search_goes_on(tmp_path: Path) -> None:
    study = _study(tmp_path)

    def one_hangs(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", -1.0, 1.0)
        if trial.number == 2:
            time.sleep(60)  # a pathological corner of the space
        return x**2

    started = time.monotonic()
    outcome = _run(tmp_path, study, one_hangs, n_trials=8, workers=2, limit_s=0.5)
    states = _states(study)
    assert len(states) == 8
    assert states[2] is optuna.trial.TrialState.FAIL
    assert states.count(optuna.trial.TrialState.COMPLETE) == 7
    assert [e.number for e in outcome.ended] == [2]
    assert "ran past the per-trial limit" in outcome.ended[0].why
    assert time.monotonic() - started < 10


def test_a_helper_that_dies_is_reported_with_its_reason_and_the_search_completes(tmp_path: Path) -> None:
    study = _study(tmp_path)

    def one_crashes(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", -1.0, 1.0)
        if trial.number == 1:
            raise AssertionError("daemonic processes are not allowed to have children")
        time.sleep(0.2)  # trials are left to start when the supervisor notices the death
        return x**2

    outcome = _run(tmp_path, study, one_crashes, n_trials=6, workers=2)
    states = _states(study)
    assert len(states) == 6
    assert states[1] is optuna.trial.TrialState.FAIL
    assert states.count(optuna.trial.TrialState.COMPLETE) == 5
    assert len(outcome.warnings) == 1
    assert "AssertionError: daemonic processes are not allowed to have children" in outcome.warnings[0]
    assert "another took its place" in outcome.warnings[0]


def test_a_trial_may_start_processes_of_its_own(tmp_path: Path) -> None:
    study = _study(tmp_path)

    def forks(trial: optuna.Trial) -> float:
        child = multiprocessing.get_context("fork").Process(target=time.sleep, args=(0.01,))
        child.start()
        child.join()
        return float(child.exitcode or 0) + trial.suggest_float("x", 0.0, 1.0)

    outcome = _run(tmp_path, study, forks, n_trials=4, workers=2)
    assert _states(study).count(optuna.trial.TrialState.COMPLETE) == 4
    assert outcome.warnings == []


def test_a_finish_request_ends_the_trials_in_flight_and_starts_no_other(tmp_path: Path) -> None:
    study = _study(tmp_path)
    finish = threading.Event()

    def slow(trial: optuna.Trial) -> float:
        time.sleep(0.3 if trial.number < 2 else 30)
        return trial.suggest_float("x", -1.0, 1.0) ** 2

    def tick(snap: Snapshot) -> None:
        if snap.finished >= 2:
            finish.set()

    started = time.monotonic()
    outcome = _run(tmp_path, study, slow, n_trials=100, workers=2, on_tick=tick, finish=finish)
    assert outcome.finished_early
    assert _states(study).count(optuna.trial.TrialState.COMPLETE) == 2
    assert optuna.trial.TrialState.RUNNING not in _states(study)
    assert time.monotonic() - started < 10
    assert _children() == []


def test_a_stop_request_raises_and_leaves_no_helper(tmp_path: Path) -> None:
    study = _study(tmp_path)
    stop = threading.Event()

    def slow(trial: optuna.Trial) -> float:
        time.sleep(30)
        return 0.0

    threading.Timer(0.5, stop.set).start()
    with pytest.raises(StopRequested):
        _run(tmp_path, study, slow, n_trials=10, workers=2, stop=stop)
    assert _children() == []


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


_REMEMBERED_POOLS = """
import multiprocessing, os
import numpy, scipy.linalg, sklearn.ensemble
from threadpoolctl import threadpool_info
from mcp_trainer.trainers.threads import limit_threads, one_blas_thread, remember_thread_pools

one_blas_thread()
remember_thread_pools()  # as the forkserver's preload does, once


def openmp():
    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "openmp"]


def worker(conn):
    before = openmp()
    with limit_threads(1):
        inside = openmp()
        threads = len(os.listdir("/proc/self/task"))
    conn.send([before, inside, openmp(), threads])


parent, child = multiprocessing.get_context("fork").Pipe()
process = multiprocessing.get_context("fork").Process(target=worker, args=(child,))
process.start()
print(parent.recv())
process.join()
"""


def test_thread_pools_found_once_before_the_fork_are_still_limited_and_restored_in_a_worker() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _REMEMBERED_POOLS], capture_output=True, text=True, timeout=120, check=True
    )
    before, inside, after, threads = json.loads(out.stdout.strip())
    assert before and before == after and max(before) == os.cpu_count(), out.stdout
    assert inside == [1] * len(before) and threads == 1
