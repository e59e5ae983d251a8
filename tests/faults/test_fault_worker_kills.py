"""Scenario 2: workers SIGKILLed from outside (as the kernel's OOM killer does) at random points of their
run: each task is retried and completes, once."""

from __future__ import annotations

import os
import random
import signal
from pathlib import Path

import anyio
import pytest

from faults.faultfigures import FaultFigures
from faults.faultkit import SEED, WorkerWatch, audit, read_records, search, tiny
from mcp_trainer import TaskStatus, TrainingService
from mcp_trainer.artifacts.model_dir import read_metadata
from mcp_trainer.artifacts.plots_state import plots_in_flight

pytestmark = [pytest.mark.faults, pytest.mark.anyio]


async def test_workers_killed_at_random_points_are_retried_and_each_task_completes_once(
    queue_dir: Path, models_dir: Path, blobs_csv: Path, slow_csv: Path, fault_figures: FaultFigures
) -> None:
    rng = random.Random(SEED + 2)
    specs = [
        search(blobs_csv, 6),
        tiny(blobs_csv),
        search(slow_csv, 3),
        search(blobs_csv, 6, n_parallel_trials=2),
    ]
    specs += [tiny(blobs_csv), search(blobs_csv, 6)]
    killed: dict[str, str] = {}  # task id -> the phase its worker was killed in
    with WorkerWatch(queue_dir) as watch:
        async with TrainingService(queue_dir, models_dir, max_concurrent=2, poll_interval_s=0.05) as svc:
            # One core each, so that two run side by side (the parallel search claims the two it uses).
            ids = [
                (await svc.submit(spec, cpu_cores=spec.get("n_parallel_trials", 1))).task_id for spec in specs
            ]
            # After its worker started: within 0.2 s, since a warm worker ends a 6-trial search on blobs in
            # well under a second and a later kill finds it completed (a CI run landed only two of six).
            delays = {task_id: rng.uniform(0.0, 0.2) for task_id in ids}
            seen_at: dict[str, float] = {}
            with anyio.fail_after(180):
                while not all([(await svc.status(t)).status.is_terminal() for t in ids]):
                    for task_id in ids:
                        record = await svc.record(task_id)
                        pid = record.worker_pid
                        running = record.status is TaskStatus.RUNNING  # a completed one may still draw
                        if task_id in killed or record.attempts != 1 or pid is None or not running:
                            continue
                        seen_at.setdefault(task_id, anyio.current_time())
                        if anyio.current_time() - seen_at[task_id] >= delays[task_id]:
                            killed[task_id] = record.progress.phase
                            os.kill(pid, signal.SIGKILL)
                    await anyio.sleep(0.01)
            records = [await svc.record(t) for t in ids]
        orphans = await anyio.to_thread.run_sync(watch.orphans)
    found = await anyio.to_thread.run_sync(audit, queue_dir, models_dir, set(ids), watch)
    fault_figures.record("2 workers SIGKILLed", found, orphans)

    # A kill aimed at a running task can land just after its result was recorded, on the worker drawing
    # its plots: the task stays completed, once, and its model says which plots the kill cost.
    late = {r.task_id for r in records if r.task_id in killed and r.attempts == 1}
    assert len(killed) - len(late) >= 3, f"too few kills landed while a worker ran: {killed}, late {late}"
    for record in records:
        assert record.status is TaskStatus.COMPLETED, (
            record.task_id,
            killed.get(record.task_id),
            record.error,
        )
        if record.task_id in late:
            assert record.result is not None
            plots = read_metadata(models_dir, record.result.model_id)["plots"]
            assert plots_in_flight(plots)[0] == []  # none left waiting on the killed drawer
        elif record.task_id in killed:
            assert record.attempts == 2
            assert [t.note for t in record.history if t.status is TaskStatus.RETRYING] == ["worker lost"]
    assert found.lost == [] and found.run_twice == [] and found.wrong_endings == []
    assert orphans == []
    assert found.corrupt_left == []
    assert set(await anyio.to_thread.run_sync(read_records, queue_dir)) == set(ids)
