"""Scenario 6: cancel racing completion. Many short tasks, each cancelled at a random moment around the
end of its run (from a little before its result to a little after), half through the owning process and
half through a second server sharing the queue (the cancel then travels through the task file). Each task
ends completed with its model, the cancel refused as too late, or cancelled without a model, the cancel
answered as done: never both, never neither."""

from __future__ import annotations

import random
from pathlib import Path

import anyio
import pytest

from faults.faultfigures import FaultFigures
from faults.faultkit import SEED, StdioServer, WorkerWatch, audit, model_dirs_of, servers, tiny
from mcp_trainer import InvalidStateError, TaskStatus, TrainingService
from mcp_trainer.ids import model_id_for

pytestmark = [pytest.mark.faults, pytest.mark.anyio]

TASKS = 16
# A tabular task's last phases, in order. Its fit is among them: a warm worker runs a tiny task's
# last three phases in a few milliseconds, so aiming only at those would land nearly every cancel too late.
LATE_PHASES = ["training", "evaluating", "saving", "done"]


async def test_a_cancel_racing_a_tasks_completion_ends_it_one_way_or_the_other_never_both(
    tmp_path: Path, queue_dir: Path, models_dir: Path, blobs_csv: Path, fault_figures: FaultFigures
) -> None:
    rng = random.Random(SEED + 6)
    answers: dict[str, str] = {}  # task id -> what its cancel answered: "cancelled" or "too late"
    remote = StdioServer(queue_dir, models_dir, tmp_path, "--max-concurrent", "2")
    remote_calls = anyio.Lock()  # one request at a time on its pipe
    with WorkerWatch(queue_dir) as watch, servers(remote):
        async with TrainingService(queue_dir, models_dir, max_concurrent=2, poll_interval_s=0.05) as svc:
            with anyio.fail_after(30):  # this process owns the queue; the second server only shares it
                while not svc.is_owner:
                    await anyio.sleep(0.01)
            await anyio.to_thread.run_sync(lambda: remote.start().initialize())

            async def cancel_near_the_end(task_id: str, through_remote: bool) -> None:
                # Aim at the end of the run: from one of its last phases (the owner's live progress,
                # read every 10 ms), plus 0-0.05 s; a task already ended gets its cancel all the same.
                trigger = LATE_PHASES.index(rng.choice(LATE_PHASES))
                while not (view := await svc.status(task_id)).status.is_terminal():
                    if view.phase in LATE_PHASES[trigger:]:
                        break
                    await anyio.sleep(0.01)
                await anyio.sleep(rng.uniform(0.0, 0.05))
                if through_remote:
                    async with remote_calls:
                        ok, answer = await anyio.to_thread.run_sync(
                            lambda: remote.call("cancel_training_task", {"task_id": task_id}, timeout=30)
                        )
                    answers[task_id] = "cancelled" if ok and answer["status"] == "cancelled" else str(answer)
                    if not ok and "already completed" in answer:
                        answers[task_id] = "too late"
                    return
                try:
                    view = await svc.cancel(task_id)
                    answers[task_id] = view.status.value
                except InvalidStateError as exc:
                    answers[task_id] = "too late" if "already completed" in exc.message else exc.message

            ids = [(await svc.submit(tiny(blobs_csv), cpu_cores=1)).task_id for _ in range(TASKS)]
            with anyio.fail_after(120):
                async with anyio.create_task_group() as tg:
                    for i, task_id in enumerate(ids):
                        tg.start_soon(cancel_near_the_end, task_id, i % 2 == 1)
                await svc.drain(timeout_s=60)
            records = {t: await svc.record(t) for t in ids}
        orphans = await anyio.to_thread.run_sync(watch.orphans)
    found = await anyio.to_thread.run_sync(audit, queue_dir, models_dir, set(ids), watch)
    fault_figures.record("6 cancel racing completion", found, orphans)

    for task_id, record in records.items():
        models = model_dirs_of(models_dir, task_id)
        if record.status is TaskStatus.COMPLETED:
            assert (answers[task_id], models) == ("too late", [model_id_for(task_id)]), task_id
        else:
            assert record.status is TaskStatus.CANCELLED, (task_id, record.status, record.error)
            assert (answers[task_id], models) == ("cancelled", []), task_id
    endings = [r.status for r in records.values()]
    assert TaskStatus.COMPLETED in endings and TaskStatus.CANCELLED in endings, "the race was not run"
    assert found.lost == [] and found.run_twice == [] and found.wrong_endings == []
    assert orphans == []
    assert found.corrupt_left == []
