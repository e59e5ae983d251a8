"""Tasks that depend on other tasks (`depends_on`): the rule on a record, the scheduler's decisions with
scripted runs, the refusals at submit, and a chain run by real workers across a restart."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from scripted import FakeMetrics, bench

from mcp_trainer import InvalidInputError, TaskStatus, TrainingService
from mcp_trainer.engine.dependencies import verdict
from mcp_trainer.engine.layout import QueueLayout
from mcp_trainer.engine.store import TaskStore
from mcp_trainer.ids import new_task_id
from mcp_trainer.records import ErrorKind, TaskError, TaskRecord
from mcp_trainer.specs.tabular import TabularSpec

pytestmark = pytest.mark.anyio

SPEC = TabularSpec(task_type="svm_classification", data_source="/data.csv", target_column="y")
A, B = "task_20260101T000000_0000000a", "task_20260101T000000_0000000b"


def child(*parents: str, policy: str = "cancel") -> TaskRecord:
    return TaskRecord.model_validate(
        {"task_id": new_task_id(), "spec": SPEC, "depends_on": list(parents), "on_dependency_failure": policy}
    )


def test_the_verdict_waits_for_unfinished_parents_naming_them_and_is_ready_once_all_completed() -> None:
    statuses = {A: TaskStatus.COMPLETED, B: TaskStatus.RUNNING}
    found = verdict(child(A, B), statuses.get)
    assert not found.ready and found.cancel is None
    assert found.wait == f"waiting for task {B} (running) to complete"
    statuses[B] = TaskStatus.COMPLETED
    assert verdict(child(A, B), statuses.get).ready


def test_a_failed_cancelled_or_vanished_parent_cancels_the_child_unless_it_runs_anyway() -> None:
    for status, words in [(TaskStatus.FAILED, "was failed"), (TaskStatus.CANCELLED, "was cancelled")]:
        found = verdict(child(A), {A: status}.get)
        assert not found.ready and found.cancel == f"task {A}, which it depends on, {words}"
        assert verdict(child(A, policy="run"), {A: status}.get).ready
    assert verdict(child(A), {}.get).cancel == f"task {A}, which it depends on, no longer exists"


async def test_a_dependant_waits_with_its_reason_and_starts_only_after_its_parent_completes(
    queue_dir: Path, models_dir: Path
) -> None:
    async with bench(queue_dir, models_dir, FakeMetrics(cpus=4)) as b:
        parent = b.add(cores=1)
        await b.until(lambda: b.started(parent))
        kid = b.add(cores=1, depends_on=[parent])
        await b.until(lambda: b.get(kid).waiting_for == f"waiting for task {parent} (running) to complete")
        await anyio.sleep(0.1)  # a free core and a free slot: still it does not start
        assert not b.started(kid) and b.get(kid).status is TaskStatus.QUEUED
        b.executor.send(parent, "result", {"model_id": "model_x", "model_dir": "/m"})
        b.executor.end(parent)
        await b.until(lambda: b.started(kid))
        assert b.get(parent).status is TaskStatus.COMPLETED


async def test_a_failed_parent_cancels_its_dependants_down_the_chain_and_spares_one_that_runs_anyway(
    queue_dir: Path, models_dir: Path
) -> None:
    async with bench(queue_dir, models_dir, FakeMetrics(cpus=4)) as b:
        parent = b.add(cores=1)
        kid = b.add(cores=1, depends_on=[parent])
        grandkid = b.add(cores=1, depends_on=[kid])
        regardless = b.add(cores=1, depends_on=[parent], on_dependency_failure="run")
        await b.until(lambda: b.started(parent))
        b.executor.end(parent, TaskError(kind=ErrorKind.DATA_ERROR, message="bad data"))
        await b.until(lambda: b.get(grandkid).status is TaskStatus.CANCELLED and b.started(regardless))
        for task_id, cause in [(kid, parent), (grandkid, kid)]:
            record = b.get(task_id)
            assert record.status is TaskStatus.CANCELLED and not b.started(task_id)
            assert record.error is not None and record.error.kind is ErrorKind.DEPENDENCY_FAILED
            assert cause in record.error.message and "retry_task" in (record.error.hint or "")


async def test_submit_refuses_bad_dependencies_with_reasons_and_writes_nothing(
    queue_dir: Path, models_dir: Path, blobs_csv: Path
) -> None:
    spec = {"task_type": "svm_classification", "data_source": str(blobs_csv), "target_column": "label"}
    async with TrainingService(queue_dir, models_dir, execute=False) as svc:
        parent = await svc.submit(spec)
        failed = TaskRecord(
            task_id=new_task_id(), spec=TabularSpec.model_validate(spec), status=TaskStatus.FAILED
        )
        TaskStore(QueueLayout.at(queue_dir)).create(failed)
        refusals = {
            "not a task id": (["model_1"], "is not a task id"),
            "unknown": ([A], f"depends_on names {A}, which this queue does not have"),
            "repeated": ([parent.task_id, parent.task_id], "more than once"),
            "failed": ([failed.task_id], f"would be cancelled at once: task {failed.task_id}"),
        }
        for what, (parents, message) in refusals.items():
            with pytest.raises(InvalidInputError, match=message):
                await svc.submit(spec, depends_on=parents)
            assert (await svc.list_tasks()).total == 2, what
        anyway = await svc.submit(spec, depends_on=[failed.task_id], on_dependency_failure="run")
        assert anyway.depends_on == [failed.task_id]
        kid = await svc.submit(spec, depends_on=[parent.task_id])
        assert kid.waiting_for == f"waiting for task {parent.task_id} (queued) to complete"
        assert kid.queue_position is None and (await svc.status(kid.task_id)).queue_position is None
        assert (await svc.status(parent.task_id)).queue_position == 1


async def test_a_chain_submitted_before_a_restart_runs_in_order_on_real_workers(
    queue_dir: Path, models_dir: Path, blobs_csv: Path
) -> None:
    spec = {
        "task_type": "svm_classification",
        "data_source": str(blobs_csv),
        "target_column": "label",
        "optimize_hyperparameters": False,
        "cv_folds": 2,
    }
    async with TrainingService(queue_dir, models_dir, execute=False) as svc:
        first = await svc.submit(spec)
        second = await svc.submit(spec, depends_on=[first.task_id])
        third = await svc.submit(spec, depends_on=[first.task_id, second.task_id])
    async with TrainingService(queue_dir, models_dir, max_concurrent=3, poll_interval_s=0.05) as svc:
        await svc.drain(timeout_s=120)
        records = [await svc.record(t.task_id) for t in (first, second, third)]
    assert [r.status for r in records] == [TaskStatus.COMPLETED] * 3
    starts = [r.started_at or 0.0 for r in records]
    ends = [r.finished_at or 0.0 for r in records]
    assert ends[0] <= starts[1] and ends[1] <= starts[2]
