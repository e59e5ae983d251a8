"""The scheduler's decisions with runs the test drives (tests/scripted.py) on a machine of the test's
choosing: who starts, with which cores and GPUs, who waits and why, and that a big task is not overtaken
forever. Real processes: tests/test_resources.py."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from scripted import FakeMetrics, bench, gpu

from mcp_trainer.engine import outcome
from mcp_trainer.engine.admission import Thresholds
from mcp_trainer.engine.layout import QueueLayout
from mcp_trainer.engine.starts import AdmissionConfig
from mcp_trainer.engine.store import TaskStore
from mcp_trainer.ids import new_task_id
from mcp_trainer.records import TaskRecord, TaskStatus
from mcp_trainer.specs.finetune import FinetuneSpec
from mcp_trainer.specs.resources import ResourceRequest
from mcp_trainer.specs.tabular import TabularSpec

pytestmark = pytest.mark.anyio


async def test_a_task_waits_with_its_reason_while_its_cores_are_held_then_starts(
    queue_dir: Path, models_dir: Path
) -> None:
    async with bench(queue_dir, models_dir, FakeMetrics(cpus=4)) as b:
        first = b.add(cores=3)
        await b.until(lambda: b.started(first))
        second = b.add(cores=2)
        await b.until(lambda: b.get(second).waiting_for == "waiting for 2 cores; 1 free")
        assert b.get(second).status is TaskStatus.QUEUED
        b.executor.send(first, "result", {"model_id": "model_x", "model_dir": "/m"})
        b.executor.end(first)
        await b.until(lambda: b.started(second))
        assert b.get(second).waiting_for is None and b.get(second).grant is not None


async def test_each_run_gets_the_cores_and_the_gpus_it_was_granted_and_never_a_held_gpu(
    queue_dir: Path, models_dir: Path
) -> None:
    machine = FakeMetrics(cpus=8, memory_gb=64, gpus=[gpu(0), gpu(1)])
    async with bench(queue_dir, models_dir, machine) as b:
        one, two, three = (
            b.add(cores=2, gpu_count=1),
            b.add(cores=3, gpu_count=1),
            b.add(cores=1, gpu_count=1),
        )
        await b.until(lambda: b.started(one) and b.started(two))
        await b.until(lambda: b.get(three).waiting_for == "waiting for 1 free GPU(s); 0 free")
        given = {s.task_id: (s.cpu_share, s.gpus) for s in b.executor.starts}
        assert given == {one: (2, (0,)), two: (3, (1,))}
        b.executor.end(two)  # a lost worker: its GPU is free again
        await b.until(lambda: b.started(three))
        assert b.executor.starts[-1].gpus == (1,)


async def test_fractional_gpu_requests_share_one_gpu_up_to_a_whole(queue_dir: Path, models_dir: Path) -> None:
    async with bench(queue_dir, models_dir, FakeMetrics(cpus=8, memory_gb=64, gpus=[gpu(0)])) as b:
        halves = [b.add(cores=1, gpu_count=0.5) for _ in range(3)]
        await b.until(lambda: b.started(halves[0]) and b.started(halves[1]))
        await b.until(lambda: b.get(halves[2]).waiting_for is not None)
        assert [s.gpus for s in b.executor.starts] == [(0,), (0,)]
        assert b.get(halves[2]).waiting_for == "waiting for 0.5 of a GPU; none has that much free"


async def test_a_big_task_is_overtaken_only_within_its_reservation_then_starts_before_later_ones(
    queue_dir: Path, models_dir: Path
) -> None:
    async with bench(queue_dir, models_dir, FakeMetrics(cpus=4), reserve_after_s=0.3) as b:
        running = b.add(cores=2)
        await b.until(lambda: b.started(running))
        big = b.add(cores=4)
        early = b.add(cores=1)
        await b.until(lambda: b.started(early))  # backfilled: the big one cannot start anyway
        await b.until(lambda: "nothing behind it starts first" in (b.get(big).waiting_for or ""))
        late = b.add(cores=1)  # one core is free, but the big task's reservation holds it
        await b.until(lambda: (b.get(late).waiting_for or "").startswith(f"held back: {big}"))
        assert not b.started(late)
        b.executor.end(running)
        b.executor.end(early)
        await b.until(lambda: b.started(big))
        assert not b.started(late)  # the big task holds every core now
        b.executor.end(big)
        await b.until(lambda: b.started(late))
        order = [s.task_id for s in b.executor.starts]
        assert order.index(big) < order.index(late)


async def test_nothing_starts_while_the_machine_is_past_a_threshold_and_starts_once_it_is_not(
    queue_dir: Path, models_dir: Path
) -> None:
    machine = FakeMetrics(cpus=4)
    machine.memory_percent = 95.0
    async with bench(queue_dir, models_dir, machine, limit=3) as b:
        b.scheduler.starts.config = AdmissionConfig(thresholds=Thresholds())
        waiting = b.add(cores=1)
        await b.until(lambda: b.get(waiting).waiting_for == "waiting: memory is 95% used (starts below 85%)")
        machine.memory_percent = 40.0
        await b.until(lambda: b.started(waiting))


async def test_tasks_with_no_core_count_share_the_cores_among_those_waiting_together(
    queue_dir: Path, models_dir: Path
) -> None:
    spec = TabularSpec(task_type="svm_classification", data_source="/data.csv", target_column="y")
    store = TaskStore(QueueLayout.at(queue_dir))
    tasks = [new_task_id() for _ in range(3)]
    for task_id in tasks:
        store.create(TaskRecord(task_id=task_id, spec=spec, resources=ResourceRequest(memory_gb=1)))
    store.close()
    async with bench(queue_dir, models_dir, FakeMetrics(cpus=6), limit=3) as b:
        await b.until(lambda: all(b.started(t) for t in tasks))
        assert [s.cpu_share for s in b.executor.starts] == [2, 2, 2]


async def test_a_completed_tasks_slot_is_free_while_its_worker_draws_but_its_gpus_are_not(
    queue_dir: Path, models_dir: Path
) -> None:
    async with bench(queue_dir, models_dir, FakeMetrics(cpus=4, gpus=[gpu(0)]), limit=1) as b:
        first = b.add(cores=1)
        await b.until(lambda: b.started(first))
        second = b.add(cores=1, gpu_count=1)
        b.executor.send(first, "result", {"model_id": "model_x", "model_dir": "/m"})  # it goes on drawing
        await b.until(lambda: b.started(second))
        assert b.get(first).status is TaskStatus.COMPLETED and first in b.executor.running()

        third = b.add(cores=1)
        b.executor.send(second, "result", {"model_id": "model_y", "model_dir": "/m"})
        await b.until(lambda: b.get(second).status is TaskStatus.COMPLETED)
        await b.until(lambda: b.get(third).waiting_for is not None)
        assert not b.started(third)  # the second's worker still holds its GPU, and so its slot
        b.executor.end(second)
        await b.until(lambda: b.started(third))


async def test_a_completed_tasks_slot_frees_only_once_its_task_file_says_completed(
    queue_dir: Path, models_dir: Path
) -> None:
    async with bench(queue_dir, models_dir, FakeMetrics(cpus=4), limit=1) as b:
        write_ending = b.scheduler._write_ending

        def slow_write(task_id: str, end: outcome.Ending) -> bool:
            time.sleep(0.3)  # a busy disk: the completion takes a while to reach the task file
            return write_ending(task_id, end)

        b.scheduler._write_ending = slow_write  # type: ignore[method-assign]
        first = b.add(cores=1)
        await b.until(lambda: b.started(first))
        second = b.add(cores=1)
        b.executor.send(first, "result", {"model_id": "model_x", "model_dir": "/m"})
        await b.until(lambda: b.started(second))
        completed_at = next(t.at for t in b.get(first).history if t.status is TaskStatus.COMPLETED)
        second_started_at = next(t.at for t in b.get(second).history if t.status is TaskStatus.RUNNING)
        assert completed_at <= second_started_at  # never two running at once in the task files


async def test_the_scheduler_has_the_executor_prepare_for_a_fine_tune_while_it_waits(
    queue_dir: Path, models_dir: Path
) -> None:
    async with bench(queue_dir, models_dir, FakeMetrics(cpus=4), limit=1, warm_up=True) as b:
        first = b.add(cores=1)
        await b.until(lambda: b.started(first))
        finetune = FinetuneSpec(
            task_type="text_classification_finetune", model_path="/models/bert", data_source="/d.csv"
        )
        waiting = b.add(cores=1, spec=finetune)
        await b.until(lambda: b.executor.is_warm_for("text_classification_finetune"))
        assert ["text_classification_finetune"] in b.executor.warm_ups
        assert not b.started(waiting)  # prepared for while it waits for the slot
        b.executor.end(first)
        await b.until(lambda: b.started(waiting))
        assert b.executor.warm_ups.count(["text_classification_finetune"]) == 1
