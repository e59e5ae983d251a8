"""TaskStore in memory and on disk: round trips, cross-instance consistency, quarantine, housekeeping."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from mcp_trainer.engine.layout import QueueLayout
from mcp_trainer.engine.store import TaskStore
from mcp_trainer.errors import InvalidInputError, TaskNotFoundError
from mcp_trainer.files import atomic_write_bytes
from mcp_trainer.ids import new_task_id
from mcp_trainer.records import Priority, TaskRecord, TaskStatus
from mcp_trainer.specs.tabular import TabularSpec


def make_record(task_id: str | None = None, **fields: object) -> TaskRecord:
    spec = TabularSpec(task_type="svm_classification", data_source="/data/x.csv", target_column="label")
    return TaskRecord.model_validate(
        {"task_id": task_id or new_task_id(), "spec": spec.model_dump(), **fields}
    )


def dead_pid() -> int:
    """A pid that no process has right now (probed from the top of the pid range down)."""
    try:
        top = int(Path("/proc/sys/kernel/pid_max").read_text())
    except (OSError, ValueError):
        top = 32768
    for pid in range(top - 1, 1, -1):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            continue
    raise AssertionError("every pid is in use")


@pytest.fixture
def store(queue_dir: Path) -> Iterator[TaskStore]:
    s = TaskStore(QueueLayout.at(queue_dir))
    yield s
    s.close()


@pytest.fixture
def other_store(queue_dir: Path, store: TaskStore) -> Iterator[TaskStore]:
    """A second instance on the same directory, standing in for another process."""
    s = TaskStore(QueueLayout.at(queue_dir))
    yield s
    s.close()


def test_a_created_record_reads_back_equal_from_the_same_and_a_fresh_store(
    store: TaskStore, queue_dir: Path
) -> None:
    record = make_record(name="first", priority=Priority.HIGH)
    store.create(record)
    assert store.get(record.task_id) == record
    fresh = TaskStore(QueueLayout.at(queue_dir))
    try:
        assert fresh.get(record.task_id) == record
    finally:
        fresh.close()


def test_update_writes_the_changed_record_and_returns_it_with_the_outcome(
    store: TaskStore, queue_dir: Path
) -> None:
    record = make_record()
    store.create(record)

    def start(r: TaskRecord) -> str:
        r.transition(TaskStatus.RUNNING, now=10.0)
        return "claimed"

    updated, outcome = store.update(record.task_id, start)
    assert outcome == "claimed"
    assert updated.status is TaskStatus.RUNNING
    fresh = TaskStore(QueueLayout.at(queue_dir))
    try:
        on_disk = fresh.get(record.task_id)
    finally:
        fresh.close()
    assert on_disk.status is TaskStatus.RUNNING
    assert on_disk.started_at == 10.0


def test_creating_a_task_id_that_exists_raises_and_keeps_the_first_record(store: TaskStore) -> None:
    record = make_record(name="original")
    store.create(record)
    with pytest.raises(FileExistsError):
        store.create(make_record(record.task_id, name="impostor"))
    assert store.get(record.task_id).name == "original"


def test_update_whose_change_raises_writes_nothing(store: TaskStore) -> None:
    record = make_record()
    store.create(record)
    inode_before = store.layout.task_file(record.task_id).stat().st_ino

    def fail(r: TaskRecord) -> None:
        r.name = "half-done"
        raise RuntimeError("abort")

    with pytest.raises(RuntimeError, match="abort"):
        store.update(record.task_id, fail)
    assert store.layout.task_file(record.task_id).stat().st_ino == inode_before
    assert store.get(record.task_id).name is None


def test_update_that_changes_nothing_does_not_rewrite_the_file(store: TaskStore) -> None:
    record = make_record()
    store.create(record)
    inode_before = store.layout.task_file(record.task_id).stat().st_ino
    store.update(record.task_id, lambda r: None)
    assert store.layout.task_file(record.task_id).stat().st_ino == inode_before


def test_update_sees_a_change_another_instance_wrote_so_no_update_is_lost(
    store: TaskStore, other_store: TaskStore
) -> None:
    record = make_record()
    store.create(record)
    assert store.get(record.task_id).cancel_requested is False  # now cached in `store`

    other_store.update(record.task_id, lambda r: setattr(r, "cancel_requested", True))

    seen: list[bool] = []

    def rename(r: TaskRecord) -> None:
        seen.append(r.cancel_requested)
        r.name = "renamed"

    updated, _ = store.update(record.task_id, rename)
    assert seen == [True]
    assert updated.cancel_requested is True
    assert updated.name == "renamed"
    final = other_store.get(record.task_id)
    assert final.cancel_requested is True
    assert final.name == "renamed"


def test_atomic_write_leaves_only_the_target_file_with_the_new_content(tmp_path: Path) -> None:
    target = tmp_path / "record.json"
    atomic_write_bytes(target, b"old")
    atomic_write_bytes(target, b"new content")
    assert target.read_bytes() == b"new content"
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]


def test_atomic_write_that_fails_leaves_no_temp_file(tmp_path: Path) -> None:
    missing_dir = tmp_path / "absent"
    with pytest.raises(FileNotFoundError):
        atomic_write_bytes(missing_dir / "record.json", b"data")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("kind", "reason_says"),
    [
        ("not_json", "Invalid JSON"),
        ("invalid_record", "status"),
        ("name_mismatch", "file name says"),
    ],
)
def test_an_unreadable_task_file_is_moved_to_corrupt_with_a_reason_and_the_rest_still_load(
    store: TaskStore, queue_dir: Path, kind: str, reason_says: str
) -> None:
    good = [make_record(name="a"), make_record(name="b")]
    for record in good:
        store.create(record)
    bad_id = new_task_id()
    bad_path = queue_dir / f"{bad_id}.json"
    if kind == "not_json":
        bad_path.write_bytes(b"{this is not json")
    elif kind == "invalid_record":
        bad_path.write_text(f'{{"task_id": "{bad_id}", "status": "exploded"}}', encoding="utf-8")
    else:
        bad_path.write_bytes(make_record(new_task_id()).model_dump_json().encode())

    store.refresh()

    assert sorted(s.task_id for s in store.summaries()) == sorted(r.task_id for r in good)
    assert not bad_path.exists()
    moved = queue_dir / "corrupt" / bad_path.name
    assert moved.exists()
    reason = (queue_dir / "corrupt" / f"{bad_path.name}.reason.txt").read_text(encoding="utf-8")
    assert reason_says in reason
    assert [name for name, _ in store.quarantined] == [bad_path.name]


def test_get_of_a_corrupt_file_moves_it_aside_and_raises_task_not_found(
    store: TaskStore, queue_dir: Path
) -> None:
    bad_id = new_task_id()
    (queue_dir / f"{bad_id}.json").write_bytes(b"\x00\x01garbage")
    with pytest.raises(TaskNotFoundError, match="could not be read"):
        store.get(bad_id)
    assert (queue_dir / "corrupt" / f"{bad_id}.json.reason.txt").exists()


def test_sweep_removes_a_temp_file_of_a_dead_pid_and_keeps_one_of_the_live_process(
    store: TaskStore, queue_dir: Path
) -> None:
    task_id = new_task_id()
    dead = queue_dir / f".{task_id}.json.{dead_pid()}.0badcafe.tmp"
    live = queue_dir / f".{task_id}.json.{os.getpid()}.0c0ffee0.tmp"
    dead.write_bytes(b"partial")
    live.write_bytes(b"in progress")

    assert store.sweep_temp_files() == 1
    assert not dead.exists()
    assert live.exists()


def test_sweep_removes_an_hour_old_temp_file_even_of_a_live_process(
    store: TaskStore, queue_dir: Path
) -> None:
    old = queue_dir / f".{new_task_id()}.json.{os.getpid()}.0c0ffee0.tmp"
    old.write_bytes(b"forgotten")
    two_hours_ago = old.stat().st_mtime - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    assert store.sweep_temp_files() == 1
    assert not old.exists()


def test_sweep_leaves_task_files_alone(store: TaskStore, queue_dir: Path) -> None:
    record = make_record()
    store.create(record)
    assert store.sweep_temp_files() == 0
    assert store.get(record.task_id) == record


def test_refresh_picks_up_a_record_another_instance_wrote_and_drops_a_deleted_one(
    store: TaskStore, other_store: TaskStore
) -> None:
    store.refresh()
    assert store.summaries() == []
    record = make_record()
    other_store.create(record)

    store.refresh()
    assert store.live() == [record]

    other_store.update(record.task_id, lambda r: setattr(r, "name", "changed"))
    store.refresh()
    assert [s.name for s in store.summaries()] == ["changed"]

    other_store.layout.task_file(record.task_id).unlink()
    store.refresh()
    assert store.summaries() == []


def test_get_of_an_unknown_task_id_raises_task_not_found(store: TaskStore) -> None:
    with pytest.raises(TaskNotFoundError, match="No task"):
        store.get(new_task_id())


@pytest.mark.parametrize(
    "bad_id",
    [
        "../x",
        "task_../../etc",
        "task_20261122T143000_8f3a2c1d/../../etc/passwd",
        "/etc/passwd",
        "",
        "task_20261122T143000_8F3A2C1D",
    ],
)
def test_a_malformed_task_id_is_rejected_before_any_path_is_built(store: TaskStore, bad_id: str) -> None:
    with pytest.raises(InvalidInputError, match="is not a task id"):
        store.layout.task_file(bad_id)
    with pytest.raises(InvalidInputError):
        store.get(bad_id)
    with pytest.raises(InvalidInputError):
        store.layout.log_file(bad_id)
    with pytest.raises(InvalidInputError):
        store.layout.work_path(bad_id)
