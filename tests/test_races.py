"""Races and accounting: a cancel that meets a result, half-saved models, retried submits, an owner that
does not answer, recoveries, a delete that meets a predict."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import AsyncGenerator, Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest

from mcp_trainer import InvalidInputError, TaskRecord, TaskStatus, TrainingService
from mcp_trainer.artifacts.model_dir import (
    delete_model_dir,
    model_dir,
    read_metadata,
    save_model_dir,
    sweep_unfinished,
    verified_model_bytes,
)
from mcp_trainer.artifacts.signing import ModelSigner
from mcp_trainer.engine import outcome
from mcp_trainer.engine.executor import Executor, RunHandle, WorkerMessage
from mcp_trainer.engine.layout import QueueLayout
from mcp_trainer.engine.processes import pid_alive, process_group_alive
from mcp_trainer.engine.scheduler import Scheduler
from mcp_trainer.engine.store import TaskStore
from mcp_trainer.ids import model_id_for, new_task_id
from mcp_trainer.records import TaskResult
from mcp_trainer.specs.tabular import TabularSpec

pytestmark = pytest.mark.anyio


def quick(csv: Path, **extra: object) -> dict[str, object]:
    spec = {"task_type": "svm_classification", "data_source": str(csv), "target_column": "label"}
    return spec | {"n_trials": 2, "cv_folds": 2} | extra


class _Handle(RunHandle):
    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        self.pid = None
        self.started_at = None

    def exit_description(self) -> str:
        return "exited with code 0"


class SavesDespiteStop(Executor):
    """A run that saves its model and reports it even though a stop was asked for meanwhile (as a worker
    does whose stop arrives while it writes its model to a slow disk)."""

    def __init__(self, models_dir: Path, key: Path) -> None:
        self.models_dir = models_dir
        self.signer = ModelSigner(key)
        self.stop_asked = anyio.Event()

    async def start(self, record: TaskRecord, *, cpu_share: int, gpus: Sequence[int] = ()) -> RunHandle:
        return _Handle(record.task_id)

    async def messages(self, handle: RunHandle) -> AsyncGenerator[WorkerMessage, None]:
        await self.stop_asked.wait()
        model_id = model_id_for(handle.task_id)
        folder = save_model_dir(
            self.models_dir,
            model_id,
            lambda p: p.write_bytes(b"model"),
            {"model_id": model_id},
            {},
            self.signer,
        )
        result = TaskResult(model_id=model_id, model_dir=str(folder))
        yield ("result", result.model_dump(mode="json"))

    async def stop(self, handle: RunHandle) -> None:
        self.stop_asked.set()

    async def finish(self, handle: RunHandle) -> None:
        return None

    async def wait_gone(self, handle: RunHandle, timeout_s: float) -> None:
        return None

    async def run_job(self, target: str, kwargs: dict[str, Any], timeout_s: float) -> Any:
        raise NotImplementedError


async def test_a_cancel_that_meets_a_saved_model_wins_and_the_model_is_not_kept(
    queue_dir: Path, models_dir: Path, blobs_csv: Path
) -> None:
    layout = QueueLayout.at(queue_dir)
    store = TaskStore(layout)
    executor = SavesDespiteStop(models_dir, layout.signing_key)
    scheduler = Scheduler(store, executor, models_dir, limit=1, poll_interval_s=0.02)
    record = TaskRecord(task_id=new_task_id(), spec=TabularSpec.model_validate(quick(blobs_csv)))
    store.create(record)
    async with anyio.create_task_group() as tg:
        tg.start_soon(scheduler.run, False)
        with anyio.fail_after(10):
            while record.task_id not in scheduler.running_ids():
                await anyio.sleep(0.01)
        store.update(record.task_id, lambda r: setattr(r, "cancel_requested", True))
        await scheduler.stop_task(record.task_id)
        tg.cancel_scope.cancel()
    ended = store.get(record.task_id)
    assert ended.status is TaskStatus.CANCELLED and ended.result is None
    assert "was not kept" in (ended.history[-1].note or "")
    assert not model_dir(models_dir, model_id_for(record.task_id)).exists()


def test_a_result_for_a_task_whose_cancel_was_asked_for_ends_it_cancelled(blobs_csv: Path) -> None:
    record = TaskRecord(task_id=new_task_id(), spec=TabularSpec.model_validate(quick(blobs_csv)))
    record.transition(TaskStatus.RUNNING)
    record.cancel_requested = True
    result = TaskResult(model_id=model_id_for(record.task_id), model_dir="/m")
    end = outcome.Ending("result", result.model_dump(mode="json"), None, False, False, "exited with code 0")
    outcome.finish(record, end)
    assert record.status is TaskStatus.CANCELLED and record.result is None


def test_half_saved_and_half_deleted_model_folders_of_dead_processes_are_swept(models_dir: Path) -> None:
    models_dir.mkdir(exist_ok=True)
    dead = subprocess.Popen(["true"])
    dead.wait()
    left = [
        models_dir / f".tmp-model_20261202T000000_0000000a-{dead.pid}",
        models_dir / f".deleting-model_20261202T000000_0000000b-{dead.pid}",
    ]
    in_progress = models_dir / f".tmp-model_20261202T000000_0000000c-{os.getpid()}"
    for folder in [*left, in_progress]:
        (folder / "reports").mkdir(parents=True)
    assert sweep_unfinished(models_dir, pid_alive, older_than_s=3600) == 2
    assert not any(folder.exists() for folder in left)
    assert in_progress.exists()  # its writer is alive: it is still being assembled


async def test_a_submit_retried_with_its_idempotency_key_returns_the_first_task(
    queue_dir: Path, models_dir: Path, blobs_csv: Path
) -> None:
    async with TrainingService(queue_dir, models_dir, execute=False) as svc:
        first = await svc.submit(quick(blobs_csv), idempotency_key="order-42")
        again = await svc.submit(quick(blobs_csv), idempotency_key="order-42")
        other = await svc.submit(quick(blobs_csv), idempotency_key="order-43")
        with pytest.raises(InvalidInputError, match=r"already used for task .* with other spec"):
            await svc.submit(quick(blobs_csv, n_trials=5), idempotency_key="order-42")
    assert again.task_id == first.task_id
    assert other.task_id != first.task_id
    assert len(list(queue_dir.glob("task_*.json"))) == 2


async def test_two_processes_submitting_with_one_key_at_once_make_one_task(
    queue_dir: Path, models_dir: Path, blobs_csv: Path
) -> None:
    async with (
        TrainingService(queue_dir, models_dir, execute=False) as a,
        TrainingService(queue_dir, models_dir, execute=False) as b,
    ):
        ids: list[str] = []

        async def submit(svc: TrainingService) -> None:
            ids.append((await svc.submit(quick(blobs_csv), idempotency_key="same")).task_id)

        async with anyio.create_task_group() as tg:
            for svc in (a, b, a, b):
                tg.start_soon(submit, svc)
    assert len(set(ids)) == 1
    assert len(list(queue_dir.glob("task_*.json"))) == 1


def test_a_task_that_kills_its_server_every_time_fails_after_the_recoveries_allowed(
    blobs_csv: Path,
) -> None:
    record = TaskRecord(task_id=new_task_id(), spec=TabularSpec.model_validate(quick(blobs_csv)))
    for _ in range(outcome.MAX_RECOVERIES):
        record.transition(TaskStatus.RUNNING)
        outcome.requeue_orphan(record)
        assert record.status is TaskStatus.RETRYING
    record.transition(TaskStatus.RUNNING)
    outcome.requeue_orphan(record)
    assert record.status is TaskStatus.FAILED
    assert record.error is not None and "stopped 6 times" in record.error.message


def test_a_model_deleted_while_a_prediction_reads_it_is_reported_as_deleted(
    models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    signer = ModelSigner(tmp_path / "key")
    model_id = "model_20261202T000000_0000abcd"
    save_model_dir(models_dir, model_id, lambda p: p.write_bytes(b"m"), {"model_id": model_id}, {}, signer)
    from mcp_trainer.artifacts import model_dir as module

    def read_then_deleted(folder: Path, wanted: str) -> dict[str, Any]:
        meta = read_metadata(folder, wanted)
        delete_model_dir(folder, wanted)  # delete_model, between the metadata and the model file
        return meta

    monkeypatch.setattr(module, "read_metadata", read_then_deleted)
    with pytest.raises(InvalidInputError, match="was deleted while this call was reading it"):
        verified_model_bytes(models_dir, model_id, signer)


async def test_a_task_whose_owner_does_not_respond_is_cancelled_by_another_process(
    queue_dir: Path, models_dir: Path, slow_csv: Path, server_process: subprocess.Popen[bytes]
) -> None:
    lock = queue_dir / ".owner.lock"
    with anyio.fail_after(30):  # the server owns the queue before this process shares it
        while not (lock.exists() and f'"pid": {server_process.pid}' in lock.read_text()):
            await anyio.sleep(0.05)
    async with TrainingService(queue_dir, models_dir, poll_interval_s=0.05) as standby:
        task_id = (await standby.submit(quick(slow_csv, n_trials=1000, cv_folds=5))).task_id
        with anyio.fail_after(60):
            while (worker := (await standby.record(task_id)).worker_pid) is None:
                await anyio.sleep(0.05)
        server_process.send_signal(signal.SIGSTOP)  # the owner holds the queue but answers nothing
        with anyio.fail_after(15):
            while (await standby.queue_status()).owner_responding:
                await anyio.sleep(0.2)
        started = time.monotonic()
        view = await standby.cancel(task_id, wait_s=15)
        took = time.monotonic() - started
        assert view.status is TaskStatus.CANCELLED
        assert not standby.is_owner
    assert took < 5
    with anyio.fail_after(10):
        while process_group_alive(worker):
            await anyio.sleep(0.05)
    server_process.send_signal(signal.SIGCONT)
    await anyio.sleep(1.0)  # the owner wakes up to a worker gone and a task already cancelled
    record = TaskStore(QueueLayout.at(queue_dir)).get(task_id)
    assert record.status is TaskStatus.CANCELLED
    assert "did not respond" in (record.history[-1].note or "")


def test_a_reader_never_sees_no_owner_while_the_owner_rewrites_its_heartbeat(queue_dir: Path) -> None:
    from mcp_trainer.engine.owner import OwnerLock

    layout = QueueLayout.at(queue_dir)
    layout.create()
    owner, reader = OwnerLock(layout, 3), OwnerLock(layout, 3)
    assert owner.try_acquire()
    stop = threading.Event()

    def beat() -> None:
        while not stop.is_set():
            owner.beat()

    beater = threading.Thread(target=beat)
    beater.start()
    try:
        seen = [reader.holder_info().get("pid") for _ in range(3000)]
    finally:
        stop.set()
        beater.join()
        owner.release()
    assert set(seen) == {os.getpid()}  # a truncate-then-write heartbeat showed no owner now and then


def test_servers_creating_the_signing_key_at_once_all_get_the_same_key_and_none_fails(tmp_path: Path) -> None:
    from mcp_trainer.secretfile import ensure_secret

    path = tmp_path / ".model-signing-key"
    start = threading.Barrier(16)
    results: list[tuple[str, bool] | Exception] = []

    def create() -> None:
        start.wait()
        try:
            results.append(ensure_secret(path, "model signing key"))
        except Exception as exc:  # the race: one saw the file before the other had written it
            results.append(exc)

    threads = [threading.Thread(target=create) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not [r for r in results if isinstance(r, Exception)]
    assert len({r[0] for r in results if isinstance(r, tuple)}) == 1
    assert sum(1 for r in results if isinstance(r, tuple) and r[1]) == 1
    assert [p.name for p in tmp_path.iterdir()] == [".model-signing-key"]  # no temporary file left
