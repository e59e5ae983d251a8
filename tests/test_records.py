"""The task lifecycle, priorities, and the pure scheduling order of waiting tasks."""

from __future__ import annotations

import itertools

import pytest

from mcp_trainer.engine.order import runnable_order
from mcp_trainer.ids import new_task_id
from mcp_trainer.records import Priority, TaskRecord, TaskStatus, Transition
from mcp_trainer.specs.tabular import TabularSpec

S = TaskStatus
# The lifecycle as documented in records.py, written out independently of its implementation.
DOCUMENTED_MOVES: set[tuple[TaskStatus, TaskStatus]] = {
    (S.QUEUED, S.RUNNING),
    (S.QUEUED, S.CANCELLED),
    (S.RUNNING, S.COMPLETED),
    (S.RUNNING, S.FAILED),
    (S.RUNNING, S.CANCELLED),
    (S.RUNNING, S.RETRYING),
    (S.RUNNING, S.QUEUED),  # clean shutdown hands the task back
    (S.RETRYING, S.RUNNING),
    (S.RETRYING, S.CANCELLED),
    (S.RETRYING, S.FAILED),
    (S.FAILED, S.QUEUED),  # retry_task, on request only
    (S.CANCELLED, S.QUEUED),  # likewise
}
TERMINAL = {S.COMPLETED, S.FAILED, S.CANCELLED}


def make_record(**fields: object) -> TaskRecord:
    spec = TabularSpec(task_type="svm_classification", data_source="/data/x.csv", target_column="label")
    return TaskRecord.model_validate({"task_id": new_task_id(), "spec": spec.model_dump(), **fields})


@pytest.mark.parametrize("status", list(TaskStatus))
def test_exactly_completed_failed_and_cancelled_are_terminal(status: TaskStatus) -> None:
    assert status.is_terminal() is (status in TERMINAL)


@pytest.mark.parametrize("status", list(TaskStatus))
def test_exactly_queued_and_retrying_are_waiting(status: TaskStatus) -> None:
    assert status.is_waiting() is (status in {S.QUEUED, S.RETRYING})


@pytest.mark.parametrize(("source", "target"), list(itertools.product(TaskStatus, TaskStatus)))
def test_can_become_allows_exactly_the_documented_moves(source: TaskStatus, target: TaskStatus) -> None:
    assert source.can_become(target) is ((source, target) in DOCUMENTED_MOVES)


@pytest.mark.parametrize("status", sorted(TERMINAL))
def test_a_terminal_status_can_only_go_back_to_queued_on_a_retry_and_completed_nowhere(
    status: TaskStatus,
) -> None:
    expected = [] if status is S.COMPLETED else [S.QUEUED]
    assert [t for t in TaskStatus if status.can_become(t)] == expected


def test_transition_to_running_records_history_and_the_start_time() -> None:
    record = make_record(finished_at=5.0)
    record.transition(S.RUNNING, "attempt 1", now=100.0)
    assert record.status is S.RUNNING
    assert record.history == [Transition(status=S.RUNNING, at=100.0, note="attempt 1")]
    assert record.started_at == 100.0
    assert record.finished_at is None


def test_transition_to_a_terminal_status_records_the_finish_time_and_forgets_the_worker() -> None:
    record = make_record()
    record.transition(S.RUNNING, now=100.0)
    record.worker_pid = 4242
    record.transition(S.COMPLETED, now=160.0)
    assert record.status is S.COMPLETED
    assert [(t.status, t.at) for t in record.history] == [(S.RUNNING, 100.0), (S.COMPLETED, 160.0)]
    assert record.started_at == 100.0
    assert record.finished_at == 160.0
    assert record.worker_pid is None


def test_transition_back_to_waiting_forgets_the_worker_process() -> None:
    record = make_record()
    record.transition(S.RUNNING, now=1.0)
    record.worker_pid = 4242
    record.worker_started_at = 0.5
    record.transition(S.RETRYING, "worker lost", now=2.0)
    assert record.worker_pid is None
    assert record.worker_started_at is None
    assert record.history[-1] == Transition(status=S.RETRYING, at=2.0, note="worker lost")


def test_transition_without_a_time_stamps_the_current_time() -> None:
    record = make_record()
    record.transition(S.CANCELLED)
    assert record.finished_at is not None
    assert record.finished_at >= record.created_at
    assert record.history[-1].at == record.finished_at


@pytest.mark.parametrize(
    ("path", "forbidden"),
    [
        ((), S.COMPLETED),
        ((), S.RETRYING),
        ((S.RUNNING, S.COMPLETED), S.RUNNING),
        ((S.CANCELLED,), S.RUNNING),
        ((S.RUNNING, S.FAILED), S.RETRYING),
    ],
)
def test_a_forbidden_transition_raises_value_error_and_changes_nothing(
    path: tuple[TaskStatus, ...], forbidden: TaskStatus
) -> None:
    record = make_record()
    for step in path:
        record.transition(step, now=1.0)
    before = record.model_copy(deep=True)
    with pytest.raises(ValueError, match=f"cannot become {forbidden.value}"):
        record.transition(forbidden, now=2.0)
    assert record == before


def test_priority_ranks_high_before_normal_before_low() -> None:
    assert Priority.HIGH.rank < Priority.NORMAL.rank < Priority.LOW.rank
    assert sorted(Priority, key=lambda p: p.rank) == [Priority.HIGH, Priority.NORMAL, Priority.LOW]


def test_waiting_sort_key_puts_priority_before_age() -> None:
    old_low = make_record(priority=Priority.LOW, created_ns=1)
    new_high = make_record(priority=Priority.HIGH, created_ns=2)
    assert new_high.sort_key_waiting() < old_low.sort_key_waiting()


def test_runnable_order_puts_high_before_normal_before_low() -> None:
    low = make_record(priority=Priority.LOW, created_ns=1)
    normal = make_record(priority=Priority.NORMAL, created_ns=2)
    high = make_record(priority=Priority.HIGH, created_ns=3)
    order = runnable_order([low, normal, high], now=1000.0)
    assert [r.task_id for r in order] == [high.task_id, normal.task_id, low.task_id]


def test_runnable_order_is_first_come_first_served_within_a_priority() -> None:
    records = [make_record(created_ns=ns) for ns in (30, 10, 20)]
    order = runnable_order(records, now=1000.0)
    assert [r.created_ns for r in order] == [10, 20, 30]


def test_runnable_order_excludes_a_retrying_task_whose_next_attempt_is_in_the_future() -> None:
    due = make_record(status=S.RETRYING, next_attempt_at=999.0, created_ns=1)
    exactly_now = make_record(status=S.RETRYING, next_attempt_at=1000.0, created_ns=2)
    later = make_record(status=S.RETRYING, next_attempt_at=1000.5, created_ns=3)
    order = runnable_order([due, exactly_now, later], now=1000.0)
    assert [r.task_id for r in order] == [due.task_id, exactly_now.task_id]


@pytest.mark.parametrize("status", [S.RUNNING, S.COMPLETED, S.FAILED, S.CANCELLED])
def test_runnable_order_excludes_running_and_terminal_tasks(status: TaskStatus) -> None:
    waiting = make_record(created_ns=2)
    other = make_record(status=status, created_ns=1, priority=Priority.HIGH)
    assert [r.task_id for r in runnable_order([other, waiting], now=1000.0)] == [waiting.task_id]


def test_elapsed_counts_from_the_first_start_over_a_hand_over_between_servers() -> None:
    from mcp_trainer.views.tasks import TaskStatusView

    r = make_record(created_at=990.0)
    r.transition(TaskStatus.RUNNING, now=1000.0)
    r.transition(TaskStatus.RETRYING, "server restarted", now=1060.0)
    r.transition(TaskStatus.RUNNING, now=1065.0)
    view = TaskStatusView.of(r, now=1100.0)
    assert view.elapsed_s == 100.0  # not 35 s, the current attempt's
