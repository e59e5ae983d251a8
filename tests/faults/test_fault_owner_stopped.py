"""Scenario 3: the owner SIGSTOPped while a second server shares the queue.

Ownership is a kernel flock on queue/.owner.lock (engine/owner.py): a stopped process keeps its locks, so
the second server never takes over while the first is stopped, and the first has nothing to step down
from when it resumes. What must hold, and is checked: never two owners (the lock's holders, sampled every
20 ms, and the servers whose workers run, every 50 ms); the second server still answers, queues new
tasks, and ends a running task it is asked to cancel (the owner does not respond: service/tasks.py ends
the worker itself); after SIGCONT the first carries on, and nothing is lost or run twice.
"""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

import pytest

from faults.faultfigures import FaultFigures
from faults.faultkit import (
    SEED,
    OwnerSampler,
    StdioServer,
    WorkerWatch,
    all_ended,
    audit,
    first_claim_after,
    flock_holders,
    owner_lock_holders,
    read_records,
    search,
    servers,
    tiny,
    until,
)
from mcp_trainer import TaskStatus
from mcp_trainer.engine.processes import process_group_alive

pytestmark = pytest.mark.faults

ONE_CORE = {"cpu_cores": 1}
STOPPED_FOR_S = 8.0  # longer than the 5 s after which a silent owner counts as not responding


def stop_outside_the_records_lock(server: StdioServer, queue_dir: Path) -> None:
    """SIGSTOP `server`, at a moment it does not hold queue/.records.lock: an owner stopped inside that
    lock blocks every other process's writes until it resumes (a known defect, reported, not this
    scenario's subject)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        server.signal(signal.SIGSTOP)
        if server.pid not in flock_holders(queue_dir / ".records.lock"):
            return
        server.signal(signal.SIGCONT)
        time.sleep(0.003)
    raise AssertionError("the owner held queue/.records.lock at every try for 30 s")


def test_an_owner_stopped_while_another_server_shares_the_queue_is_never_joined_by_a_second_owner(
    tmp_path: Path,
    queue_dir: Path,
    models_dir: Path,
    blobs_csv: Path,
    slow_csv: Path,
    fault_figures: FaultFigures,
) -> None:
    rng = random.Random(SEED + 3)
    first = StdioServer(queue_dir, models_dir, tmp_path, "--max-concurrent", "2")
    second = StdioServer(queue_dir, models_dir, tmp_path, "--max-concurrent", "2")
    with WorkerWatch(queue_dir) as watch, OwnerSampler(queue_dir) as owners, servers(first, second):
        first.start().initialize()
        until(lambda: owner_lock_holders(queue_dir) == {first.pid}, 60, "the first server owns the queue")
        second.start().initialize()
        ok, doomed = first.call("submit_training_task", search(slow_csv, 1000) | ONE_CORE)
        assert ok, doomed
        ok, steady = first.call("submit_training_task", search(blobs_csv, 40) | ONE_CORE)
        assert ok, steady
        doomed_id, steady_id = doomed["task_id"], steady["task_id"]
        acknowledged = {doomed_id, steady_id}

        def both_run() -> bool:
            records = read_records(queue_dir)
            return all(records[t].worker_pid is not None for t in (doomed_id, steady_id))

        until(both_run, 60, "both tasks have a worker")
        doomed_worker = read_records(queue_dir)[doomed_id].worker_pid
        assert doomed_worker is not None
        time.sleep(rng.uniform(0.0, 1.0))  # the stop lands at a random point of their runs
        stop_outside_the_records_lock(first, queue_dir)
        stopped_at = time.monotonic()

        # The second server answers, queues, and reads the owner as not responding.
        for _ in range(3):
            ok, answer = second.call("submit_training_task", tiny(blobs_csv) | ONE_CORE, timeout=20)
            assert ok, answer
            acknowledged.add(answer["task_id"])
        ok, cancelled = second.call("cancel_training_task", {"task_id": doomed_id}, timeout=30)
        assert ok and cancelled["status"] == "cancelled", cancelled
        until(lambda: not process_group_alive(doomed_worker), 10, "the cancelled task's workers are gone")
        ok, queue = second.call("get_queue_status", {})
        assert ok, queue
        assert (queue["owner_pid"], queue["owner_responding"], queue["this_process_executes"]) == (
            first.pid,
            False,
            False,
        )
        while time.monotonic() - stopped_at < STOPPED_FOR_S:  # the fault lasts; nothing waits on it
            time.sleep(0.1)
        holders_while_stopped = set(owners.holders)

        first.signal(signal.SIGCONT)
        resumed_at = time.time()
        until(lambda: all_ended(queue_dir), 120, "every task ended after the owner resumed", interval=0.2)
        ok, after = first.call("get_queue_status", {})
        assert ok and after["this_process_executes"], after
        ok, after = second.call("get_queue_status", {})
        assert ok and not after["this_process_executes"], after
        holders = set(owners.holders)  # before the servers close
    orphans = watch.orphans()
    records = read_records(queue_dir)
    found = audit(queue_dir, models_dir, acknowledged, watch)
    fault_figures.record(
        "3 owner SIGSTOPped, 2nd server", found, orphans, first_claim_after(records, resumed_at)
    )

    assert holders_while_stopped == {first.pid} and holders == {first.pid}
    assert owners.most_at_once == 1 and owners.samples > 100
    assert watch.sessions == {first.pid} and watch.most_sessions_at_once == 1
    assert records[doomed_id].status is TaskStatus.CANCELLED
    assert "did not respond" in (records[doomed_id].history[-1].note or "")
    assert all(r.status is TaskStatus.COMPLETED for t, r in records.items() if t != doomed_id)
    assert all(r.owner_pid == first.pid for r in records.values())
    assert found.lost == [] and found.run_twice == [] and found.wrong_endings == []
    assert orphans == []
    assert found.corrupt_left == []
