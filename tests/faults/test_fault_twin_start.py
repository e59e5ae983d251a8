"""Scenario 8: two servers started at the same instant on one queue, several rounds. Each pair is held at
a gate after its imports and released together, on a queue that holds waiting tasks and, after the
first round, tasks left running by a pair SIGKILLed mid-run: exactly one of the two owns the queue (the
lock's holders, sampled every 20 ms; what each says of itself), exactly one recovers the tasks left
running, and every task runs once."""

from __future__ import annotations

import os
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
    owner_lock_holders,
    read_records,
    search,
    servers,
    tiny,
    until,
)
from mcp_trainer import TaskStatus

pytestmark = pytest.mark.faults

ROUNDS = 2
ONE_CORE = {"cpu_cores": 1}
# Imports first, then wait at the gate (a byte on the inherited pipe), then run the CLI as
# `python -m mcp_trainer` would, with the same arguments.
GATED = (
    "import os, sys\n"
    "import mcp_trainer.cli, mcp_trainer.server, mcp_trainer.engine.layout, mcp_trainer.artifacts.signing\n"
    "print('at the gate', file=sys.stderr, flush=True)\n"
    "os.read(int(sys.argv[1]), 1)\n"
    "raise SystemExit(mcp_trainer.cli.main(sys.argv[2:]))\n"
)


def start_together(twins: list[StdioServer]) -> float:
    """Start both processes, wait until both wait at the gate, open it; returns the moment it opened."""
    gate_out, gate_in = os.pipe()
    try:
        for server in twins:
            server.start(launcher=["-c", GATED, str(gate_out)], pass_fds=(gate_out,))
        for server in twins:
            until(
                lambda s=server: "at the gate" in s.stderr_path.read_text(),
                60,
                f"pid {server.pid} at the gate",
            )
        opened = time.time()
        os.write(gate_in, b"go")
        return opened
    finally:
        os.close(gate_out)
        os.close(gate_in)


def a_worker_runs(queue_dir: Path) -> bool:
    return any(r.status is TaskStatus.RUNNING and r.worker_pid for r in read_records(queue_dir).values())


def test_two_servers_started_at_the_same_instant_make_one_owner_and_run_every_task_once(
    tmp_path: Path,
    queue_dir: Path,
    models_dir: Path,
    blobs_csv: Path,
    slow_csv: Path,
    fault_figures: FaultFigures,
) -> None:
    rng = random.Random(SEED + 8)
    acknowledged: set[str] = set()
    opened_at: list[float] = []
    owners_per_round: list[list[int]] = []
    with WorkerWatch(queue_dir) as watch, OwnerSampler(queue_dir) as owners, servers() as started:
        for round_ in range(ROUNDS + 1):
            twins = [StdioServer(queue_dir, models_dir, tmp_path, "--max-concurrent", "2") for _ in range(2)]
            started.extend(twins)
            opened_at.append(start_together(twins))
            for server in twins:
                server.initialize()
            until(lambda: bool(owner_lock_holders(queue_dir)), 60, "one of the two owns the queue")
            says = [server.call("get_queue_status", {})[1] for server in twins]
            owners_per_round.append([s["owner_pid"] for s in says if s["this_process_executes"]])
            assert len({s["owner_pid"] for s in says}) == 1, says
            if round_ == ROUNDS:
                break  # the last pair runs what is left to the end
            for server in twins:  # work for this round and the next, through both
                for spec in (search(blobs_csv, 8), tiny(blobs_csv)):
                    ok, answer = server.call("submit_training_task", spec | ONE_CORE)
                    assert ok, answer
                    acknowledged.add(answer["task_id"])
            until(lambda: a_worker_runs(queue_dir), 60, "a task's worker runs")
            time.sleep(rng.uniform(0.0, 1.0))  # the pair dies at a random point of the runs
            for server in twins:
                server.signal(signal.SIGKILL)
            for server in twins:
                server.wait_exit()
        until(lambda: all_ended(queue_dir), 180, "every task ended", interval=0.2)
        holders = set(owners.holders)  # before the last pair closes (one may take over from the other then)
    orphans = watch.orphans()
    records = read_records(queue_dir)
    found = audit(queue_dir, models_dir, acknowledged, watch)
    recovery = max(
        (w for w in (first_claim_after(records, t) for t in opened_at[1:]) if w is not None), default=None
    )
    fault_figures.record("8 two servers at one instant", found, orphans, recovery)

    assert [len(pids) for pids in owners_per_round] == [1] * (ROUNDS + 1), owners_per_round
    assert owners.most_at_once == 1 and watch.most_sessions_at_once == 1
    assert holders == {pid for pids in owners_per_round for pid in pids}
    assert all(r.status is TaskStatus.COMPLETED for r in records.values()), [
        r.status for r in records.values()
    ]
    assert any(r.recoveries for r in records.values()), (
        "no pair died with a task running: the test proved little"
    )
    assert found.lost == [] and found.run_twice == [] and found.wrong_endings == []
    assert orphans == []
    assert found.corrupt_left == []
