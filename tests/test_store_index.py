"""The store at scale: summaries in memory, full records only of tasks that have not ended, and the index
(`.index/tasks.jsonl`) that lets a start-up parse only the task files it does not vouch for."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from mcp_trainer.engine.layout import QueueLayout
from mcp_trainer.engine.store import TaskStore
from mcp_trainer.engine.summary import TaskSummary, read_index, summarize, write_index
from mcp_trainer.files import atomic_write_bytes
from mcp_trainer.ids import new_task_id
from mcp_trainer.records import (
    Alert,
    ErrorKind,
    Progress,
    Severity,
    TaskError,
    TaskRecord,
    TaskResult,
    TaskStatus,
)
from mcp_trainer.specs.tabular import TabularSpec
from mcp_trainer.views.tasks import TaskListItem, TaskStatusView

ENDED = (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED)


def make_record(status: TaskStatus = TaskStatus.QUEUED, **fields: object) -> TaskRecord:
    spec = TabularSpec(task_type="svm_classification", data_source="/data/x.csv", target_column="label")
    record = TaskRecord(task_id=new_task_id(), spec=spec, user_id="ann", **fields)  # type: ignore[arg-type]
    if status is TaskStatus.QUEUED:
        return record
    record.transition(TaskStatus.RUNNING, "attempt 1", now=record.created_at + 1)
    record.attempts = 1
    record.progress = Progress(percent=40.0, phase="searching", trial=4, n_trials=10, best_score=0.9)
    if status is TaskStatus.COMPLETED:
        record.result = TaskResult(model_id=f"model_{record.task_id[5:]}", model_dir="/nowhere")
    if status in (TaskStatus.FAILED, TaskStatus.RETRYING):
        record.error = TaskError(kind=ErrorKind.WORKER_LOST, message="it died")
    if status is not TaskStatus.RUNNING:
        record.transition(status, now=record.created_at + 5)
    return record


def open_store(queue_dir: Path) -> TaskStore:
    store = TaskStore(QueueLayout.at(queue_dir))
    store.refresh()
    return store


@pytest.fixture
def store(queue_dir: Path) -> Iterator[TaskStore]:
    s = TaskStore(QueueLayout.at(queue_dir))
    yield s
    s.close()


def fill(store: TaskStore, ended: int, waiting: int) -> list[TaskRecord]:
    records = [make_record(ENDED[i % 3]) for i in range(ended)] + [make_record() for _ in range(waiting)]
    for r in records:
        store.create(r)
    store.save_index()
    return records


def test_a_restart_with_the_index_parses_only_the_files_of_tasks_that_have_not_ended(
    store: TaskStore, queue_dir: Path
) -> None:
    records = fill(store, ended=30, waiting=4)
    fresh = open_store(queue_dir)
    try:
        assert fresh.parsed == 4
        assert sorted(s.task_id for s in fresh.summaries()) == sorted(r.task_id for r in records)
        assert sorted(r.task_id for r in fresh.live()) == sorted(r.task_id for r in records[30:])
    finally:
        fresh.close()


def test_ended_tasks_are_not_held_as_full_records_after_a_start_up(store: TaskStore, queue_dir: Path) -> None:
    fill(store, ended=20, waiting=2)
    for index in (True, False):
        if not index:
            store.layout.index_file.unlink()
        fresh = open_store(queue_dir)
        try:
            assert fresh.parsed == (2 if index else 22)
            assert all(r.status.is_waiting() for r in fresh.live()) and len(fresh.live()) == 2
            assert fresh._cache.recent_ids() == []  # no ended task's record is held until one is read
        finally:
            fresh.close()


def test_a_restart_sees_task_files_changed_added_removed_or_replaced_while_it_was_down(
    store: TaskStore, queue_dir: Path
) -> None:
    records = fill(store, ended=6, waiting=0)
    same_size, other_size, removed, replaced = records[:4]
    # Rewritten in place (the inode kept, as an inode reused would be): other content, same size.
    path = store.layout.task_file(same_size.task_id)
    data = same_size.model_copy(update={"name": "xx"}).model_dump_json()
    assert len(data) == path.stat().st_size  # '"xx"' takes as many bytes as 'null'
    st = path.stat()
    with open(path, "r+", encoding="utf-8") as f:
        f.write(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    # In place, with a different size and the old mtime put back.
    path = store.layout.task_file(other_size.task_id)
    st = path.stat()
    path.write_text(other_size.model_copy(update={"name": "longer name"}).model_dump_json())
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    store.layout.task_file(removed.task_id).unlink()
    atomic_write_bytes(
        store.layout.task_file(replaced.task_id),
        replaced.model_copy(update={"name": "replaced"}).model_dump_json().encode(),
    )
    added = make_record(TaskStatus.COMPLETED, name="added")
    store.layout.task_file(added.task_id).write_text(added.model_dump_json())

    fresh = open_store(queue_dir)
    try:
        names = {s.task_id: s.name for s in fresh.summaries()}
        assert fresh.parsed == 4
        assert names[same_size.task_id] == "xx"
        assert names[other_size.task_id] == "longer name"
        assert removed.task_id not in names
        assert names[replaced.task_id] == "replaced"
        assert names[added.task_id] == "added"
    finally:
        fresh.close()


def forge(path: Path, how: str) -> None:
    """Spoil the index at `path` one way."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    if how == "torn":
        path.write_text(text[: len(text) // 2], encoding="utf-8")
    elif how == "garbage":
        path.write_bytes(b"\x00\xff garbage")
    elif how == "other_version":
        header = json.loads(lines[0]) | {"format": 999}
        path.write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n", encoding="utf-8")
    elif how in _SPOILED_VALUES:
        row = json.loads(lines[1])
        field, value = _SPOILED_VALUES[how]
        row[TaskSummary._fields.index(field)] = value
        path.write_text("\n".join([lines[0], json.dumps(row), *lines[2:]]) + "\n", encoding="utf-8")
    elif how == "a_task_twice":
        path.write_text("\n".join([*lines, lines[1]]) + "\n", encoding="utf-8")
    elif how == "a_short_line":
        path.write_text("\n".join([*lines, "[1, 2]"]) + "\n", encoding="utf-8")
    elif how == "a_link":
        target = path.with_name("elsewhere.jsonl")
        path.rename(target)
        path.symlink_to(target)
    else:
        raise AssertionError(how)


_SPOILED_VALUES = {
    "wrong_types": ("ino", "not an inode"),
    "a_bool_for_an_int": ("attempts", True),
    "an_unknown_status": ("status", "finished"),
    "an_unknown_error_kind": ("error_kind", "meltdown"),
    "a_malformed_task_id": ("task_id", "task_../../etc"),
}


@pytest.mark.parametrize(
    "how", ["torn", "garbage", "other_version", "a_link", "a_task_twice", "a_short_line", *_SPOILED_VALUES]
)
def test_an_unusable_index_is_ignored_said_so_in_the_log_and_written_anew(
    store: TaskStore, queue_dir: Path, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    records = fill(store, ended=8, waiting=1)
    forge(store.layout.index_file, how)
    with caplog.at_level(logging.WARNING, logger="mcp_trainer.engine.store"):
        fresh = open_store(queue_dir)
    try:
        assert fresh.parsed == 9
        assert sorted(s.task_id for s in fresh.summaries()) == sorted(r.task_id for r in records)
        assert any("is not used" in m and "written anew" in m for m in caplog.messages)
        rebuilt, why = read_index(store.layout.index_file)
        assert why is None and rebuilt is not None and len(rebuilt) == 9
    finally:
        fresh.close()


def test_an_index_entry_cannot_vouch_for_a_link_named_like_a_task(
    store: TaskStore, queue_dir: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "someone_elses.json"
    record = make_record(TaskStatus.COMPLETED)
    outside.write_text(record.model_dump_json(), encoding="utf-8")
    link = store.layout.task_file(record.task_id)
    link.symlink_to(outside)
    st = link.lstat()
    forged = summarize(record, (st.st_ino, st.st_mtime_ns, st.st_size))
    store.layout.index_dir.mkdir()
    write_index(store.layout.index_file, [forged])
    fresh = open_store(queue_dir)
    try:
        assert fresh.summaries() == []
        assert (queue_dir / "corrupt" / link.name).is_symlink()
    finally:
        fresh.close()


def test_this_stores_own_writes_need_no_scan_and_another_stores_are_seen(
    store: TaskStore, queue_dir: Path
) -> None:
    store.refresh()
    other = open_store(queue_dir)
    try:
        mine = make_record()
        store.create(mine)
        store.update(mine.task_id, lambda r: setattr(r, "name", "renamed"))
        parsed = store.parsed
        store.refresh()
        assert store.parsed == parsed  # its own writes are held as written: nothing parsed again
        theirs = make_record()
        other.create(theirs)
        other.update(mine.task_id, lambda r: setattr(r, "name", "by the other"))
        store.refresh()
        assert {s.task_id: s.name for s in store.summaries()} == {
            mine.task_id: "by the other",
            theirs.task_id: None,
        }
        other.refresh()
        assert {s.task_id for s in other.summaries()} == {mine.task_id, theirs.task_id}
    finally:
        other.close()


def test_get_reads_an_ended_task_from_its_file_and_again_once_it_changed(
    store: TaskStore, queue_dir: Path
) -> None:
    [record] = fill(store, ended=1, waiting=0)
    fresh = open_store(queue_dir)
    try:
        assert fresh.get(record.task_id) == record
        parsed = fresh.parsed
        assert fresh.get(record.task_id) == record  # held since it was read
        assert fresh.parsed == parsed
        path = store.layout.task_file(record.task_id)
        st = path.stat()
        with open(path, "r+", encoding="utf-8") as f:  # in place: the inode stays
            f.write(record.model_copy(update={"name": "xx"}).model_dump_json())
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
        assert fresh.get(record.task_id).name == "xx"
    finally:
        fresh.close()


def test_an_idempotency_key_of_an_ended_task_not_held_in_full_returns_that_task(
    store: TaskStore, queue_dir: Path
) -> None:
    first = make_record(TaskStatus.COMPLETED, idempotency_key="k-1")
    store.create(first)
    store.save_index()
    fresh = open_store(queue_dir)
    try:
        assert fresh.parsed == 0
        again = make_record(idempotency_key="k-1")
        assert fresh.create(again) == first
        assert not fresh.layout.task_file(again.task_id).exists()
    finally:
        fresh.close()


def test_counts_follow_every_change_of_status(store: TaskStore) -> None:
    records = [make_record(), make_record(), make_record(TaskStatus.FAILED)]
    for r in records:
        store.create(r)
    store.update(records[0].task_id, lambda r: r.transition(TaskStatus.CANCELLED))
    store.layout.task_file(records[2].task_id).unlink()
    store.refresh()
    counts = store.counts()
    assert (counts[TaskStatus.QUEUED], counts[TaskStatus.CANCELLED], counts[TaskStatus.FAILED]) == (1, 1, 0)


@pytest.mark.parametrize("status", list(TaskStatus))
def test_a_list_item_from_a_summary_equals_the_one_from_the_full_status_view(status: TaskStatus) -> None:
    record = make_record(status, name="a name")
    if status is TaskStatus.RUNNING:
        alert = Alert(kind="stalled", severity=Severity.WARNING, message="no progress", since=1.0)
        record.alerts = [alert, alert]
    for position in (None, 3):
        view = TaskStatusView.of(record, queue_position=position)
        from_summary = TaskListItem.of_summary(summarize(record, (1, 2, 3)), queue_position=position)
        assert from_summary == TaskListItem.of(view)
