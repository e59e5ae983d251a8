"""Scenario 4: ENOSPC. The queue and the models live on two 8 MiB tmpfs mounts. The models' disk is
filled first: tasks that end by saving a model fail as `disk_full` and wait for space, no attempt burned,
all of it clear in their status at once. Then the queue's disk is filled while a search writes its Optuna
journal: its attempt ends on the full disk, and the ending reaches the task file once space is freed. A
submit meanwhile is refused in words. Nothing is corrupt (the journal stays readable by plain Optuna), and
once space is freed every task resumes and completes without a hand on the queue.

The product waits 60 s for space (engine/retries.py: DISK_WAIT_S) and the suite shortens nothing, so
this scenario takes a little over a minute.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from faults.faultfigures import FaultFigures
from faults.faultkit import WorkerWatch, audit, corrupt_left, first_claim_after, read_records, search, tiny
from mcp_trainer import TaskStatus, TrainerError, TrainingService
from mcp_trainer.records import ErrorKind

pytestmark = [pytest.mark.faults, pytest.mark.anyio]


@contextlib.contextmanager
def tmpfs(mount: Path, size: str = "8m") -> Iterator[Path]:
    """A small tmpfs at `mount`, unmounted whatever happens."""
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], capture_output=True
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {made.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        if subprocess.run(["umount", str(mount)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture
def small_disks(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """Two 8 MiB disks: one for the queue, one for the models."""
    with tmpfs(tmp_path / "queue-disk") as queue_disk, tmpfs(tmp_path / "models-disk") as models_disk:
        yield queue_disk, models_disk


def fill(disk: Path) -> Path:
    """Take every free block of `disk` with one file; returns it."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 16, 1):  # large writes, then the last bytes one at a time
            with contextlib.suppress(OSError):
                while os.write(fd, b"\0" * size):
                    pass
        with pytest.raises(OSError) as full:
            os.write(fd, b"\0")
        assert full.value.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


def journal_trials(journal: Path) -> list[TrialState]:
    """The states of the trials in a study journal, read by plain Optuna (no repair of ours)."""
    storage = JournalStorage(JournalFileBackend(str(journal)))
    (study,) = optuna.get_all_study_summaries(storage)
    return [t.state for t in optuna.load_study(study_name=study.study_name, storage=storage).trials]


async def test_a_full_disk_under_the_queue_and_models_gives_clear_errors_and_recovers_on_its_own(
    small_disks: tuple[Path, Path], blobs_csv: Path, fault_figures: FaultFigures
) -> None:
    queue_disk, models_disk = small_disks
    queue_dir, models_dir = queue_disk / "queue", models_disk / "trained_models"
    with WorkerWatch(queue_dir) as watch:
        async with TrainingService(queue_dir, models_dir, max_concurrent=2, poll_interval_s=0.05) as svc:

            async def status_is(status: TaskStatus, *task_ids: str) -> bool:
                return all([(await svc.status(t)).status is status for t in task_ids])

            searching = (await svc.submit(search(blobs_csv, 300), cpu_cores=1)).task_id
            with anyio.fail_after(60):
                while ((await svc.status(searching)).trial or 0) < 10:
                    await anyio.sleep(0.05)

            # The models' disk: each model save fails, and the task says so at once.
            models_filler = await anyio.to_thread.run_sync(fill, models_disk)
            saving = [(await svc.submit(tiny(blobs_csv), cpu_cores=1)).task_id for _ in range(2)]
            with anyio.fail_after(60):
                while not await status_is(TaskStatus.RETRYING, *saving):
                    await anyio.sleep(0.05)
            for task_id in saving:
                view = await svc.status(task_id)
                assert view.error is not None and view.error.kind is ErrorKind.DISK_FULL, view.error
                assert "Free disk space" in (view.error.hint or ""), view.error
                assert (view.retry_plan or "").startswith("waiting for disk space"), view.retry_plan

            # The queue's disk, during the search: the journal's writes fail, and so does a submit.
            queue_filler = await anyio.to_thread.run_sync(fill, queue_disk)
            with pytest.raises(TrainerError) as refused:
                await svc.submit(tiny(blobs_csv), cpu_cores=1)
            assert "could not be saved" in refused.value.message and "No space left" in refused.value.message
            assert "Free disk space" in (refused.value.hint or "")
            with anyio.fail_after(60):  # the search's attempt ends on the full disk
                while searching in await anyio.to_thread.run_sync(watch.alive_tasks):
                    await anyio.sleep(0.05)
            journal = queue_dir / "work" / searching / "study.journal"
            trials_before = await anyio.to_thread.run_sync(journal_trials, journal)
            assert trials_before.count(TrialState.COMPLETE) >= 10
            assert await anyio.to_thread.run_sync(corrupt_left, queue_dir, models_dir) == []

            await anyio.to_thread.run_sync(queue_filler.unlink)
            await anyio.to_thread.run_sync(models_filler.unlink)
            freed_at = time.time()
            with anyio.fail_after(15):  # the search's ending is written within a second or so
                while not await status_is(TaskStatus.RETRYING, searching):
                    await anyio.sleep(0.05)
            view = await svc.status(searching)
            assert view.error is not None and view.error.kind is ErrorKind.DISK_FULL, view.error
            assert (view.retry_plan or "").startswith("waiting for disk space"), view.retry_plan
            after = (await svc.submit(tiny(blobs_csv), cpu_cores=1)).task_id  # the queue works meanwhile
            waited = [searching, *saving]
            with anyio.fail_after(150):  # the 60 s wait for space, then the runs
                while not all([(await svc.status(t)).status.is_terminal() for t in [*waited, after]]):
                    await anyio.sleep(0.2)
            records = {t: await svc.record(t) for t in [*waited, after]}
        orphans = await anyio.to_thread.run_sync(watch.orphans)
    found = await anyio.to_thread.run_sync(audit, queue_dir, models_dir, set(records), watch)
    recovery = first_claim_after({t: records[t] for t in waited}, freed_at)
    fault_figures.record("4 ENOSPC on queue + models", found, orphans, recovery)

    for task_id in waited:
        record = records[task_id]
        assert record.status is TaskStatus.COMPLETED, (task_id, record.error)
        assert (record.attempts, record.disk_waits) == (1, 1)
        assert [t.note for t in record.history if t.status is TaskStatus.RETRYING] == ["disk_full"]
    assert records[after].status is TaskStatus.COMPLETED
    trials_after = await anyio.to_thread.run_sync(journal_trials, journal)
    assert records[searching].result is not None
    assert trials_after.count(TrialState.COMPLETE) == records[searching].result.n_trials_completed
    assert trials_after.count(TrialState.COMPLETE) >= trials_before.count(TrialState.COMPLETE)
    assert set(await anyio.to_thread.run_sync(read_records, queue_dir)) == set(records)
    assert found.lost == [] and found.run_twice == [] and found.wrong_endings == []
    assert orphans == []
    assert found.corrupt_left == []
