"""The queue directory is meant to be shared: whatever another writer of it puts there (a record with a bad
id, a directory or a link named like a task, a huge record, a record naming someone else's process, links
planted where logs, reasons and work go) is set aside or ignored, and never stalls the queue, redirects a
write, leaks a file or kills a process that is not this queue's worker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import anyio
import psutil
import pytest

from mcp_trainer import TaskRecord, TaskStatus, TrainingService
from mcp_trainer.engine.layout import QueueLayout
from mcp_trainer.engine.processes import is_this_queues_worker
from mcp_trainer.engine.store import MAX_RECORD_BYTES, TaskStore
from mcp_trainer.errors import InvalidInputError, InvalidStateError, TaskNotFoundError
from mcp_trainer.ids import new_task_id
from mcp_trainer.records import MAX_WARNINGS, ErrorKind, TaskError, with_warning
from mcp_trainer.specs.tabular import TabularSpec

pytestmark = pytest.mark.anyio


def quick(csv: Path, **extra: object) -> dict[str, object]:
    spec = {"task_type": "svm_classification", "data_source": str(csv), "target_column": "label"}
    return spec | {"n_trials": 2, "cv_folds": 2} | extra


def record_for(csv: Path, task_id: str | None = None) -> TaskRecord:
    spec = TabularSpec.model_validate(quick(csv))
    return TaskRecord(task_id=task_id or new_task_id(), spec=spec)


def targets_outside(tmp_path: Path) -> tuple[Path, Path]:
    """A file and a folder outside the queue, which no planted link may write to."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n", encoding="utf-8")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    return victim, elsewhere


def quarantine_reason(queue_dir: Path, name: str) -> str:
    return (queue_dir / "corrupt" / f"{name}.reason.txt").read_text(encoding="utf-8")


async def test_a_record_whose_id_is_malformed_is_set_aside_and_other_tasks_still_start(
    queue_dir: Path, models_dir: Path, blobs_csv: Path
) -> None:
    # {"task_id": "evil"} in evil.json made every scheduling round raise: no task started.
    TaskStore(QueueLayout.at(queue_dir)).close()
    evil = record_for(blobs_csv).model_dump(mode="json") | {"task_id": "evil"}
    (queue_dir / "evil.json").write_text(json.dumps(evil), encoding="utf-8")
    async with TrainingService(queue_dir, models_dir, poll_interval_s=0.05) as svc:
        task_id = (await svc.submit(quick(blobs_csv))).task_id
        done = await svc.wait(task_id, timeout_s=60)
    assert done.status is TaskStatus.COMPLETED
    assert not (queue_dir / "evil.json").exists()
    assert "not named after a task id" in quarantine_reason(queue_dir, "evil.json")


def test_a_directory_named_like_a_task_is_set_aside_with_a_clear_reason(queue_dir: Path) -> None:
    store = TaskStore(QueueLayout.at(queue_dir))
    task_id = new_task_id()
    (queue_dir / f"{task_id}.json").mkdir()
    with pytest.raises(TaskNotFoundError, match="not a regular file"):
        store.get(task_id)
    assert (queue_dir / "corrupt" / f"{task_id}.json").is_dir()
    assert store.live_now() == [] and store.summaries() == []


def test_a_link_named_like_a_task_is_moved_aside_as_a_link_and_its_target_is_left_alone(
    queue_dir: Path, tmp_path: Path, blobs_csv: Path
) -> None:
    outside = tmp_path / "someone_elses.json"
    task_id = new_task_id()
    outside.write_text(record_for(blobs_csv, task_id).model_dump_json(), encoding="utf-8")
    before = outside.read_bytes()
    store = TaskStore(QueueLayout.at(queue_dir))
    (queue_dir / f"{task_id}.json").symlink_to(outside)
    assert store.live_now() == []  # a valid record, but reached through a link: not read
    assert store.summaries() == []
    assert (queue_dir / "corrupt" / f"{task_id}.json").is_symlink()
    assert "symbolic link" in quarantine_reason(queue_dir, f"{task_id}.json")
    assert outside.read_bytes() == before


def test_a_record_larger_than_the_cap_is_set_aside_without_being_parsed(
    queue_dir: Path, blobs_csv: Path
) -> None:
    task_id = new_task_id()
    huge = record_for(blobs_csv, task_id).model_dump(mode="json") | {"name": "x" * (MAX_RECORD_BYTES + 1)}
    store = TaskStore(QueueLayout.at(queue_dir))
    (queue_dir / f"{task_id}.json").write_text(json.dumps(huge), encoding="utf-8")
    started = time.perf_counter()
    assert store.live_now() == [] and store.summaries() == []
    assert time.perf_counter() - started < 5
    assert f"larger than {MAX_RECORD_BYTES} bytes" in quarantine_reason(queue_dir, f"{task_id}.json")


def test_a_quarantine_reason_names_the_fields_but_never_quotes_the_files_values(queue_dir: Path) -> None:
    task_id = new_task_id()
    queue_dir.mkdir(exist_ok=True)
    (queue_dir / f"{task_id}.json").write_text(
        json.dumps({"task_id": task_id, "status": "S3cr3t-1!", "spec": {}}), encoding="utf-8"
    )
    TaskStore(QueueLayout.at(queue_dir)).refresh()
    reason = quarantine_reason(queue_dir, f"{task_id}.json")
    assert "status" in reason
    assert "S3cr3t" not in reason


def test_a_link_planted_as_a_reason_file_or_as_corrupt_itself_redirects_nothing(
    queue_dir: Path, tmp_path: Path
) -> None:
    victim, elsewhere = targets_outside(tmp_path)
    store = TaskStore(QueueLayout.at(queue_dir))
    first, second = new_task_id(), new_task_id()
    (queue_dir / "corrupt").mkdir()
    (queue_dir / "corrupt" / f"{first}.json.reason.txt").symlink_to(victim)
    (queue_dir / f"{first}.json").write_bytes(b"not json")
    store.refresh()
    assert victim.read_text(encoding="utf-8") == "precious\n"
    assert len(store.quarantined) == 1 and (queue_dir / "corrupt").is_dir()

    for entry in (queue_dir / "corrupt").iterdir():
        entry.unlink()
    (queue_dir / "corrupt").rmdir()
    (queue_dir / "corrupt").symlink_to(elsewhere)
    (queue_dir / f"{second}.json").write_bytes(b"not json")
    store.refresh()
    assert list(elsewhere.iterdir()) == []
    assert (queue_dir / "corrupt").is_dir() and not (queue_dir / "corrupt").is_symlink()
    assert (queue_dir / "corrupt" / f"{second}.json").exists()


async def test_links_planted_as_a_tasks_log_and_work_folder_receive_nothing(
    queue_dir: Path, models_dir: Path, tmp_path: Path, blobs_csv: Path
) -> None:
    victim, elsewhere = targets_outside(tmp_path)
    store = TaskStore(QueueLayout.at(queue_dir))
    record = record_for(blobs_csv)
    store.create(record)
    (queue_dir / "logs" / f"{record.task_id}.log").symlink_to(victim)
    (queue_dir / "work" / record.task_id).symlink_to(elsewhere, target_is_directory=True)
    async with TrainingService(queue_dir, models_dir, poll_interval_s=0.05) as svc:
        done = await svc.wait(record.task_id, timeout_s=60)
        lines = await svc.logs(record.task_id)
    assert done.status is TaskStatus.COMPLETED
    assert victim.read_text(encoding="utf-8") == "precious\n"
    assert list(elsewhere.iterdir()) == []
    assert any(record.task_id in line for line in lines)  # the worker's own log, in a real file


async def test_a_fifo_planted_as_a_tasks_log_neither_blocks_nor_fails_its_worker(
    queue_dir: Path, models_dir: Path, blobs_csv: Path
) -> None:
    store = TaskStore(QueueLayout.at(queue_dir))
    record = record_for(blobs_csv)
    store.create(record)
    os.mkfifo(queue_dir / "logs" / f"{record.task_id}.log")  # opening it for writing would block
    async with TrainingService(queue_dir, models_dir, poll_interval_s=0.05) as svc:
        done = await svc.wait(record.task_id, timeout_s=60)
        lines = await svc.logs(record.task_id)
    assert done.status is TaskStatus.COMPLETED and done.attempts == 1
    assert any("completed" in line for line in lines)


async def test_get_task_logs_refuses_a_log_that_is_a_link_and_shows_none_of_its_target(
    queue_dir: Path, models_dir: Path, tmp_path: Path, blobs_csv: Path
) -> None:
    secret = tmp_path / "creds.csv"
    secret.write_text("user,password\nroot,S3cr3t-1!\n", encoding="utf-8")
    async with TrainingService(queue_dir, models_dir, poll_interval_s=0.05) as svc:
        task_id = (await svc.submit(quick(blobs_csv))).task_id
        await svc.wait(task_id, timeout_s=60)
        log_file = queue_dir / "logs" / f"{task_id}.log"
        log_file.unlink()
        log_file.symlink_to(secret)
        with pytest.raises(InvalidStateError, match="symbolic link") as refused:
            await svc.logs(task_id)
    assert "S3cr3t" not in str(refused.value)


async def test_a_running_record_naming_another_process_does_not_get_that_process_killed(
    queue_dir: Path, models_dir: Path, blobs_csv: Path
) -> None:
    # A record "running" with another process's pid made the next start SIGKILL that process's group.
    bystander = subprocess.Popen(  # noqa: ASYNC220 (it returns at once)
        [sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True
    )
    try:
        record = record_for(blobs_csv)
        record.transition(TaskStatus.RUNNING, "planted")
        record.worker_pid = bystander.pid
        record.worker_started_at = psutil.Process(bystander.pid).create_time()
        TaskStore(QueueLayout.at(queue_dir)).create(record)
        assert not is_this_queues_worker(QueueLayout.at(queue_dir), record)
        async with TrainingService(queue_dir, models_dir, poll_interval_s=0.05) as svc:
            done = await svc.wait(record.task_id, timeout_s=60)  # taken back and run by this owner
        assert done.status is TaskStatus.COMPLETED
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


async def test_a_real_worker_is_recognised_as_this_queues_worker(
    queue_dir: Path, models_dir: Path, slow_csv: Path
) -> None:
    layout = QueueLayout.at(queue_dir)
    async with TrainingService(queue_dir, models_dir, poll_interval_s=0.05) as svc:
        task_id = (await svc.submit(quick(slow_csv, n_trials=1000))).task_id
        with anyio.fail_after(30):
            while (record := await svc.record(task_id)).worker_pid is None:
                await anyio.sleep(0.05)
        assert is_this_queues_worker(layout, record)
        other_queue = QueueLayout.at(queue_dir.parent / "another_queue")
        assert not is_this_queues_worker(other_queue, record)
        await svc.cancel(task_id)


def test_a_new_task_whose_arguments_would_make_a_huge_record_is_refused(
    queue_dir: Path, blobs_csv: Path
) -> None:
    store = TaskStore(QueueLayout.at(queue_dir))
    columns = [f"column_with_a_long_name_{i:06d}" for i in range(20_000)]
    spec = TabularSpec.model_validate(quick(blobs_csv) | {"feature_columns": columns})
    with pytest.raises(InvalidInputError, match="at most"):
        store.create(TaskRecord(task_id=new_task_id(), spec=spec))
    assert list(queue_dir.glob("*.json")) == []


def test_warnings_stay_bounded_and_count_those_left_out() -> None:
    warnings: list[str] = []
    for i in range(MAX_WARNINGS + 10):
        warnings = with_warning(warnings, f"trial {i} ran past its limit")
    warnings = with_warning(warnings, "trial 0 ran past its limit")  # already there: no change
    assert len(warnings) == MAX_WARNINGS
    assert warnings[-1] == "more warnings, in the task's log: 11"


def test_an_error_message_of_any_length_is_kept_short() -> None:
    error = TaskError(kind=ErrorKind.INTERNAL, message="x" * 100_000, hint="y" * 100_000)
    assert len(error.message) == 2000 and error.message.endswith("…")
    assert error.hint is not None and len(error.hint) == 1000


@pytest.mark.parametrize("name", ["logs", "work"])
@pytest.mark.parametrize("planted", ["link", "file"])
def test_a_link_or_file_planted_in_place_of_a_queue_folder_is_replaced_by_a_folder(
    queue_dir: Path, tmp_path: Path, name: str, planted: str
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    queue_dir.mkdir(exist_ok=True)
    if planted == "link":
        (queue_dir / name).symlink_to(elsewhere, target_is_directory=True)
    else:
        (queue_dir / name).write_text("in the way", encoding="utf-8")
    QueueLayout.at(queue_dir).create()
    assert (queue_dir / name).is_dir() and not (queue_dir / name).is_symlink()
    assert list(elsewhere.iterdir()) == []
    if planted == "file":  # set aside, not deleted
        assert [p.read_text(encoding="utf-8") for p in queue_dir.glob(f"{name}.not-a-directory.*")] == [
            "in the way"
        ]
