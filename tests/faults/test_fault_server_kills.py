"""Scenario 1: the server SIGKILLed at random points (seeded) during a stream of submits and runs, then
restarted, several rounds: every acknowledged task ends exactly once, none is run twice."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from faults.faultfigures import FaultFigures
from faults.faultkit import (
    SEED,
    ServerGone,
    StdioServer,
    WorkerWatch,
    all_ended,
    audit,
    first_claim_after,
    read_records,
    search,
    servers,
    tiny,
    until,
)

pytestmark = pytest.mark.faults

ROUNDS = 4
ONE_CORE = {"cpu_cores": 1}  # two tasks side by side on the 2-core machine


def worker_started(queue_dir: Path, since: float) -> bool:
    """Whether an attempt begun after `since` has its worker running (past the forkserver's start)."""
    return any(
        r.worker_pid is not None and r.started_at is not None and r.started_at >= since
        for r in read_records(queue_dir).values()
    )


def test_a_server_killed_at_random_points_loses_no_acknowledged_task_and_runs_none_twice(
    tmp_path: Path,
    queue_dir: Path,
    models_dir: Path,
    blobs_csv: Path,
    slow_csv: Path,
    fault_figures: FaultFigures,
) -> None:
    rng = random.Random(SEED + 1)
    # Tasks complete as soon as their model is saved (the plots follow): a slow search among them makes
    # sure the kills also land on running tasks.
    kinds = [tiny(blobs_csv) | ONE_CORE, search(blobs_csv, 6) | ONE_CORE, search(slow_csv, 3) | ONE_CORE]
    acknowledged: set[str] = set()
    orphans: list[str] = []
    restarts: list[float] = []  # when a server started on a queue that had tasks left to run

    def submit(server: StdioServer) -> None:
        ok, answer = server.call("submit_training_task", rng.choices(kinds, weights=[2, 1, 1])[0])
        assert ok, answer
        acknowledged.add(answer["task_id"])

    with WorkerWatch(queue_dir) as watch, servers() as started:
        for _ in range(ROUNDS):
            server = StdioServer(queue_dir, models_dir, tmp_path, "--max-concurrent", "2").start()
            started.append(server)
            if not all_ended(queue_dir):
                restarts.append(server.started_at)
            server.initialize()
            for _ in range(rng.randint(1, 2)):
                submit(server)
            # The kill lands at a random point of the run: 0-4 s after this server's first worker started.
            until(lambda s=server: worker_started(queue_dir, s.started_at), 60, "a worker started")
            kill_at = time.monotonic() + rng.uniform(0.0, 4.0)
            while time.monotonic() < kill_at:
                submit(server)
                time.sleep(rng.uniform(0.5, 1.2))  # pacing: a task or two a second, not a synchronisation
            if rng.random() < 0.5:  # a submit in flight as it dies: it may exist or not, never half
                server.call_without_waiting("submit_training_task", tiny(blobs_csv) | ONE_CORE)
            orphans += [f"pid {pid}, started by server {server.pid}" for pid in server.kill()]
        final = StdioServer(queue_dir, models_dir, tmp_path, "--max-concurrent", "2").start()
        started.append(final)
        restarts.append(final.started_at)
        try:
            final.initialize()
        except ServerGone:
            raise AssertionError(final.stderr_path.read_text()) from None
        until(lambda: all_ended(queue_dir), 240, "every task ended after the last restart", interval=0.2)
        final.close()
        orphans += watch.orphans()
    records = read_records(queue_dir)
    waits = [w for w in (first_claim_after(records, t) for t in restarts) if w is not None]
    found = audit(queue_dir, models_dir, acknowledged, watch)
    fault_figures.record("1 server SIGKILLed, restarted", found, orphans, max(waits, default=None))

    assert len(acknowledged) >= 8 and found.tasks >= len(acknowledged)
    assert found.lost == []
    assert found.run_twice == []
    assert found.wrong_endings == []
    assert orphans == []
    assert found.corrupt_left == []
    assert any(r.recoveries for r in records.values()), (
        "no kill landed on a running task: the test proved little"
    )
