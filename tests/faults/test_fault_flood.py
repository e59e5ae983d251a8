"""Scenario 7: a flood of submits. Four client servers share the queue with its owner and each sends a
hundred submits at once (pipelined: none waits for the answer before it), all four together, while the
owner runs tasks. Every submit is answered with a task of its own, every answered task has its file,
no task appears that nobody submitted, and none runs twice. The owner then runs a few, and the rest
are cancelled, again all at once from every client (a queue of 400 one-second tasks would take minutes)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from faults.faultfigures import FaultFigures
from faults.faultkit import (
    OwnerSampler,
    StdioServer,
    WorkerWatch,
    all_ended,
    audit,
    log_lines,
    owner_lock_holders,
    read_records,
    servers,
    tiny,
    until,
)
from mcp_trainer import TaskStatus

pytestmark = pytest.mark.faults

CLIENTS = 4
PER_CLIENT = 100


def all_at_once(
    clients: list[StdioServer], tool: str, calls: list[list[dict[str, Any]]]
) -> list[tuple[bool, Any]]:
    """Each client sends its list of calls pipelined, all clients starting together; the answers, in order."""
    answers: list[list[tuple[bool, Any]]] = [[] for _ in clients]
    start = threading.Barrier(len(clients))

    def send(i: int) -> None:
        start.wait(30)
        answers[i] = clients[i].call_many(tool, calls[i], timeout=180)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(clients))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(200)
    assert all(len(a) == len(c) for a, c in zip(answers, calls, strict=True)), (
        "a client did not answer every call"
    )
    return [answer for per_client in answers for answer in per_client]


def test_a_flood_of_submits_from_several_processes_at_once_loses_none_and_runs_none_twice(
    tmp_path: Path, queue_dir: Path, models_dir: Path, blobs_csv: Path, fault_figures: FaultFigures
) -> None:
    owner = StdioServer(queue_dir, models_dir, tmp_path, "--max-concurrent", "2")
    clients = [StdioServer(queue_dir, models_dir, tmp_path, "--max-concurrent", "2") for _ in range(CLIENTS)]
    with WorkerWatch(queue_dir) as watch, OwnerSampler(queue_dir) as owners, servers(owner, *clients):
        owner.start().initialize()
        until(lambda: owner_lock_holders(queue_dir) == {owner.pid}, 60, "the owner owns the queue")
        for client in clients:
            client.start()
        for client in clients:
            client.initialize()
        spec = tiny(blobs_csv) | {"cpu_cores": 1}
        submitted = all_at_once(clients, "submit_training_task", [[spec] * PER_CLIENT for _ in clients])
        refused = [answer for ok, answer in submitted if not ok]
        assert refused == []
        acknowledged = [answer["task_id"] for _, answer in submitted]
        assert len(set(acknowledged)) == CLIENTS * PER_CLIENT

        def completed() -> int:
            return sum(r.status is TaskStatus.COMPLETED for r in read_records(queue_dir).values())

        until(lambda: completed() >= 6, 120, "the owner ran a few of the flood's tasks")
        left = sorted(t for t, r in read_records(queue_dir).items() if not r.status.is_terminal())
        cancels = all_at_once(
            clients,
            "cancel_training_task",
            [[{"task_id": t} for t in left[i::CLIENTS]] for i in range(CLIENTS)],
        )
        # A cancel that met the task's end is refused as too late; every other one cancelled its task.
        odd = [
            a for ok, a in cancels if not (ok and a["status"] == "cancelled") and "already completed" not in a
        ]
        assert odd == []
        until(lambda: all_ended(queue_dir), 60, "every task ended")
        holders, sessions = set(owners.holders), set(watch.sessions)  # before the servers close
    orphans = watch.orphans()
    records = read_records(queue_dir)
    found = audit(queue_dir, models_dir, set(acknowledged), watch)
    fault_figures.record(f"7 flood: {CLIENTS}x{PER_CLIENT} submits at once", found, orphans)

    assert set(records) == set(acknowledged)  # none lost, none made up
    assert holders == {owner.pid} and sessions == {owner.pid}
    never_ran = [r for r in records.values() if r.attempts == 0]
    assert all(r.status is TaskStatus.CANCELLED for r in never_ran)
    assert all(log_lines(queue_dir, r.task_id) == [] for r in never_ran)
    assert sum(r.status is TaskStatus.COMPLETED for r in records.values()) >= 6
    assert found.lost == [] and found.run_twice == [] and found.wrong_endings == []
    assert orphans == []
    assert found.corrupt_left == []
