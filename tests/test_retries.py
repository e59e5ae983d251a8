"""Retries: backoff with jitter, what each kind of failure does to the next attempt, retry_task, and a
planned retry that survives a restart."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from mcp_trainer import InvalidStateError, TaskStatus, TrainingService
from mcp_trainer.engine.retries import MAX_DISK_WAITS, backoff_s, retry_or_fail
from mcp_trainer.ids import new_task_id
from mcp_trainer.records import ErrorKind, TaskError, TaskRecord
from mcp_trainer.specs.finetune import FinetuneSpec
from mcp_trainer.specs.resources import Grant
from mcp_trainer.specs.tabular import TabularSpec

pytestmark = pytest.mark.anyio


def search(n_parallel_trials: int | None = 4, attempts: int = 3) -> TaskRecord:
    spec = TabularSpec(
        task_type="svm_classification",
        data_source="/d.csv",
        target_column="y",
        n_parallel_trials=n_parallel_trials,
    )
    record = TaskRecord(task_id=new_task_id(), spec=spec, max_attempts=attempts, attempt_budget=attempts)
    record.grant = Grant(cpu_cores=4, memory_gb=1)
    return record


def failed_attempt(record: TaskRecord, kind: ErrorKind, now: float = 1000.0) -> TaskRecord:
    record.transition(TaskStatus.RUNNING)
    record.attempts += 1
    record.error = TaskError(kind=kind, message="m")
    retry_or_fail(record, kind.value, now=now)
    return record


def test_backoff_doubles_from_one_second_with_jitter_and_is_capped_at_five_minutes() -> None:
    rng = random.Random(0)
    for attempt, base in [(1, 1.0), (2, 2.0), (3, 4.0), (6, 32.0), (20, 300.0)]:
        waits = [backoff_s(attempt, rng) for _ in range(200)]
        assert base * 0.75 <= min(waits) and max(waits) <= base * 1.25
        assert max(waits) - min(waits) > base * 0.2  # jittered, so that retries do not fall in step


def test_a_lost_worker_is_retried_after_a_backoff_written_into_the_record() -> None:
    record = failed_attempt(search(), ErrorKind.WORKER_LOST, now=1000.0)
    assert record.status is TaskStatus.RETRYING
    assert record.next_attempt_at is not None and 1000.75 <= record.next_attempt_at <= 1001.25
    assert record.retry_plan is not None and record.retry_plan.startswith("attempt 2 of 3 in 1 s")
    assert record.retry_plan.endswith("after worker_lost")


def test_a_cuda_error_is_retried_in_a_fresh_process() -> None:
    record = failed_attempt(search(), ErrorKind.CUDA_ERROR)
    assert record.status is TaskStatus.RETRYING and "after cuda_error" in (record.retry_plan or "")


def test_a_search_out_of_memory_is_retried_with_half_its_parallel_trials_each_time() -> None:
    record = failed_attempt(search(n_parallel_trials=4), ErrorKind.OUT_OF_MEMORY)
    assert record.overrides == {"n_parallel_trials": 2}
    assert "with n_parallel_trials=2" in (record.retry_plan or "")
    failed_attempt(record, ErrorKind.OUT_OF_MEMORY)
    assert record.overrides == {"n_parallel_trials": 1} and record.status is TaskStatus.RETRYING


def test_a_search_out_of_memory_with_one_trial_at_a_time_fails_saying_nothing_is_smaller() -> None:
    record = failed_attempt(search(n_parallel_trials=1), ErrorKind.OUT_OF_MEMORY)
    assert record.status is TaskStatus.FAILED
    assert record.error is not None and "nothing smaller to try" in (record.error.hint or "")


def test_a_fine_tune_out_of_memory_is_not_retried_its_loop_already_shrank_the_batch(tmp_path: Path) -> None:
    spec = FinetuneSpec.model_construct(task_type="text_classification_finetune")
    record = TaskRecord.model_construct(**(search().__dict__ | {"spec": spec}))
    failed_attempt(record, ErrorKind.OUT_OF_MEMORY)
    assert record.status is TaskStatus.FAILED


@pytest.mark.parametrize(
    "kind", [ErrorKind.DATA_ERROR, ErrorKind.INTERNAL, ErrorKind.TIMEOUT, ErrorKind.SCRIPT_ERROR]
)
def test_errors_a_retry_cannot_fix_are_never_retried(kind: ErrorKind) -> None:
    record = failed_attempt(search(), kind)
    assert record.status is TaskStatus.FAILED and record.next_attempt_at is None


def test_a_full_disk_waits_for_space_without_burning_an_attempt_up_to_a_bound() -> None:
    record = search(attempts=1)
    failed_attempt(record, ErrorKind.DISK_FULL, now=1000.0)
    assert record.status is TaskStatus.RETRYING and record.attempts == 0
    assert record.next_attempt_at == 1060.0 and "does not count as an attempt" in (record.retry_plan or "")
    for _ in range(MAX_DISK_WAITS - 1):
        failed_attempt(record, ErrorKind.DISK_FULL)
    assert record.status is TaskStatus.RETRYING
    failed_attempt(record, ErrorKind.DISK_FULL)
    assert record.status is TaskStatus.FAILED
    assert record.error is not None and "Free space, then call retry_task" in (record.error.hint or "")


def test_a_task_out_of_attempts_fails_and_says_retry_task_can_run_it_again() -> None:
    record = search(attempts=2)
    failed_attempt(record, ErrorKind.WORKER_LOST)
    failed_attempt(record, ErrorKind.WORKER_LOST)
    assert record.status is TaskStatus.FAILED
    assert record.error is not None and "Gave up after 2 attempts" in (record.error.hint or "")


async def test_retry_task_queues_a_failed_task_again_with_a_fresh_budget_and_keeps_its_history(
    queue_dir: Path, models_dir: Path
) -> None:
    async with TrainingService(queue_dir, models_dir, execute=False) as svc:
        store = svc._parts().store
        record = search(attempts=2)
        failed_attempt(record, ErrorKind.WORKER_LOST)
        failed_attempt(record, ErrorKind.WORKER_LOST)
        store.create(record)
        view = await svc.retry(record.task_id)
        assert view.status is TaskStatus.QUEUED and view.error is None
        assert view.attempts == 2 and view.max_attempts == 4
        again = store.get(record.task_id)
        assert [h.status for h in again.history][-2:] == [TaskStatus.FAILED, TaskStatus.QUEUED]
        assert again.history[-1].note == "retried on request"


async def test_retry_task_refuses_a_task_that_is_waiting_running_or_completed_and_changes_nothing(
    queue_dir: Path, models_dir: Path
) -> None:
    async with TrainingService(queue_dir, models_dir, execute=False) as svc:
        store = svc._parts().store
        waiting = search()
        store.create(waiting)
        done = search()
        done.transition(TaskStatus.RUNNING)
        done.transition(TaskStatus.COMPLETED)
        store.create(done)
        with pytest.raises(
            InvalidStateError, match="is queued; only failed or cancelled tasks can be retried"
        ):
            await svc.retry(waiting.task_id)
        with pytest.raises(InvalidStateError, match="Submit it again to train a new model"):
            await svc.retry(done.task_id)
        assert store.get(done.task_id).status is TaskStatus.COMPLETED


async def test_a_planned_retry_keeps_its_time_and_plan_across_a_restart(
    queue_dir: Path, models_dir: Path
) -> None:
    async with TrainingService(queue_dir, models_dir, execute=False) as svc:
        record = failed_attempt(search(), ErrorKind.WORKER_LOST, now=time.time() + 3600)
        svc._parts().store.create(record)
    async with TrainingService(queue_dir, models_dir, execute=True, warm_up=False) as svc:
        view = await svc.status(record.task_id)
        assert view.status is TaskStatus.RETRYING
        assert view.retry_plan == record.retry_plan
        stored = svc._parts().store.get(record.task_id)
        assert stored.next_attempt_at == record.next_attempt_at  # not started early by the new owner


async def test_an_attempt_made_smaller_by_a_retry_says_so_in_its_status(
    queue_dir: Path, models_dir: Path, blobs_csv: Path
) -> None:
    spec = TabularSpec(
        task_type="svm_classification",
        data_source=str(blobs_csv),
        target_column="label",
        n_trials=2,
        cv_folds=2,
        n_parallel_trials=2,
    )
    record = TaskRecord(task_id=new_task_id(), spec=spec, overrides={"n_parallel_trials": 1})
    async with TrainingService(queue_dir, models_dir, poll_interval_s=0.05) as svc:
        svc._parts().store.create(record)
        svc._parts().scheduler.wake()
        done = await svc.wait(record.task_id, timeout_s=120)
    assert done.status is TaskStatus.COMPLETED
    assert "this attempt runs with n_parallel_trials=1: an earlier attempt ran out of memory" in done.warnings
