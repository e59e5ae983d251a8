"""A full disk: endings that could not be written are written once there is space, tasks marked running
that nobody runs are taken back while the owner runs, and ENOSPC is classified wherever it surfaces."""

from __future__ import annotations

import errno
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from mcp_trainer import ErrorKind, TaskRecord, TaskStatus, TrainingService
from mcp_trainer.engine import outcome
from mcp_trainer.engine.failures import classify_exception
from mcp_trainer.engine.layout import QueueLayout
from mcp_trainer.engine.store import TaskStore
from mcp_trainer.ids import model_id_for, new_task_id
from mcp_trainer.specs.tabular import TabularSpec

pytestmark = pytest.mark.anyio


def quick(csv: Path) -> dict[str, object]:
    spec = {"task_type": "svm_classification", "data_source": str(csv), "target_column": "label"}
    return spec | {"n_trials": 2, "cv_folds": 2}


async def test_an_ending_the_full_disk_kept_from_the_record_is_written_once_there_is_space(
    queue_dir: Path, models_dir: Path, blobs_csv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The scheduler swallowed the failed write: the task stayed "running" with a dead worker until a
    # restart, counting against the limit.
    full = threading.Event()
    write = TaskStore._write

    def write_unless_full(self: TaskStore, record: TaskRecord) -> None:
        if full.is_set() and record.status.is_terminal():
            raise OSError(errno.ENOSPC, "No space left on device")
        write(self, record)

    monkeypatch.setattr(TaskStore, "_write", write_unless_full)
    async with TrainingService(queue_dir, models_dir, poll_interval_s=0.05) as svc:
        full.set()
        task_id = (await svc.submit(quick(blobs_csv))).task_id
        with anyio.fail_after(60):
            while not list(models_dir.glob("model_*/metadata.json")):  # the worker finished and saved
                await anyio.sleep(0.05)
        await anyio.sleep(1.5)  # several tries of the write, all failing
        assert TaskStore(QueueLayout.at(queue_dir)).get(task_id).status is TaskStatus.RUNNING  # the file
        seen = await svc.status(task_id)  # the owner shows the ending it holds, and why it is not written
        assert seen.status is TaskStatus.COMPLETED
        assert any("its task file could not be written" in w for w in seen.warnings)
        full.clear()
        done = await svc.wait(task_id, timeout_s=10)
    assert done.status is TaskStatus.COMPLETED and done.model_id is not None


async def test_a_task_marked_running_that_no_worker_runs_is_taken_back_while_the_owner_runs(
    queue_dir: Path, models_dir: Path, blobs_csv: Path
) -> None:
    async with TrainingService(queue_dir, models_dir, poll_interval_s=0.05) as svc:
        with anyio.fail_after(10):
            while not svc.is_owner:
                await anyio.sleep(0.02)
        spec = TabularSpec.model_validate(quick(blobs_csv))
        orphan = TaskRecord(task_id=new_task_id(), spec=spec, owner_pid=os.getpid())
        orphan.transition(TaskStatus.RUNNING, "an ending that was never recorded")
        TaskStore(QueueLayout.at(queue_dir)).create(orphan)
        done = await svc.wait(orphan.task_id, timeout_s=60)
        record = await svc.record(orphan.task_id)
    assert done.status is TaskStatus.COMPLETED
    assert record.recoveries == 1
    assert any(t.note == "server restarted" for t in record.history)


def test_enospc_anywhere_in_the_chain_of_causes_is_disk_full() -> None:
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise AssertionError("Should not reach") from None  # as Optuna's journal storage does
    except AssertionError as exc:
        hidden = exc
    hidden.__context__ = OSError(errno.ENOSPC, "No space left on device")
    assert classify_exception(hidden).kind is ErrorKind.DISK_FULL
    assert classify_exception(AssertionError("Should not reach")).kind is ErrorKind.INTERNAL


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "tiny"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    try:
        fd = os.open(mount / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            while os.write(fd, b"x" * 4096):
                pass
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
        finally:
            os.close(fd)
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_an_unexplained_error_on_a_full_disk_is_disk_full(full_disk: Path) -> None:
    error = classify_exception(AssertionError("Should not reach"), (full_disk,))
    assert error.kind is ErrorKind.DISK_FULL
    assert "Free disk space" in (error.hint or "")


async def test_an_ending_the_disk_kept_from_the_task_file_shows_in_the_owners_status_with_a_warning(
    queue_dir: Path, models_dir: Path
) -> None:
    spec = TabularSpec(task_type="svm_classification", data_source="/d.csv", target_column="y")
    record = TaskRecord(task_id=new_task_id(), spec=spec)
    record.transition(TaskStatus.RUNNING)
    record.attempts = 1
    async with TrainingService(queue_dir, models_dir, execute=False) as svc:
        svc._parts().store.create(record)
        result = {"model_id": model_id_for(record.task_id), "model_dir": str(models_dir / "m")}
        ending = outcome.Ending("result", result, None, False, False, "exited with code 0")
        svc._parts().scheduler._unrecorded[record.task_id] = ending  # as _record keeps it on ENOSPC
        view = await svc.status(record.task_id)
        assert view.status is TaskStatus.COMPLETED
        assert any("its task file could not be written" in w for w in view.warnings)
        assert (await svc.record(record.task_id)).status is TaskStatus.COMPLETED
        assert svc._parts().store.get(record.task_id).status is TaskStatus.RUNNING  # the file: not yet
