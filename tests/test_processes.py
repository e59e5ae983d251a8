"""Process behaviour with real worker processes and a real server process: cancel, limit, crash, takeover."""

from __future__ import annotations

import contextlib
import inspect
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest

from mcp_trainer import TaskRecord, TaskStatus, TrainingService
from mcp_trainer.artifacts.model_dir import read_metadata
from mcp_trainer.engine.processes import process_group_alive

pytestmark = pytest.mark.anyio


def slow_spec(data: Path, **extra: Any) -> dict[str, Any]:
    return {
        "task_type": "svm_classification",
        "data_source": str(data),
        "target_column": "label",
        "n_trials": 1000,
        "cv_folds": 5,
        **extra,
    }


def quick_spec(data: Path, **extra: Any) -> dict[str, Any]:
    return {
        "task_type": "svm_classification",
        "data_source": str(data),
        "target_column": "label",
        "n_trials": 3,
        "cv_folds": 3,
        **extra,
    }


async def _holds(predicate: Any) -> bool:
    outcome = predicate()
    return bool(await outcome) if inspect.isawaitable(outcome) else bool(outcome)


async def wait_until(predicate: Any, timeout: float = 30.0, interval: float = 0.02) -> None:
    with anyio.fail_after(timeout):
        while not await _holds(predicate):
            await anyio.sleep(interval)


async def test_cancel_of_a_running_task_stops_its_processes_and_marks_it_cancelled(
    queue_dir: Path, models_dir: Path, slow_csv: Path
) -> None:
    async with TrainingService(queue_dir, models_dir, max_concurrent=1) as svc:
        task_id = (await svc.submit(slow_spec(slow_csv))).task_id

        async def searching_with_worker() -> bool:
            return bool(
                (await svc.status(task_id)).phase == "searching" and (await svc.record(task_id)).worker_pid
            )

        await wait_until(searching_with_worker)
        pid = (await svc.record(task_id)).worker_pid
        assert pid is not None and psutil.pid_exists(pid)
        assert os.getpgid(pid) == pid  # the worker leads its own process group

        view = await svc.cancel(task_id)

        assert view.status is TaskStatus.CANCELLED
        assert not process_group_alive(pid)
        assert view.error is None  # cancelled is not failed
        assert not (models_dir / f"model_{task_id.removeprefix('task_')}").exists()


async def test_a_cancelled_queued_task_never_starts(
    queue_dir: Path, models_dir: Path, slow_csv: Path
) -> None:
    async with TrainingService(queue_dir, models_dir, max_concurrent=1) as svc:
        running = (await svc.submit(slow_spec(slow_csv))).task_id
        waiting = (await svc.submit(slow_spec(slow_csv))).task_id

        async def started() -> bool:
            return bool((await svc.status(running)).status is TaskStatus.RUNNING)

        await wait_until(started)
        assert (await svc.cancel(waiting)).status is TaskStatus.CANCELLED
        await svc.cancel(running)
        await anyio.sleep(1.0)  # several scheduler rounds with a free slot
        record = await svc.record(waiting)
        assert record.status is TaskStatus.CANCELLED
        assert record.attempts == 0 and record.started_at is None


async def test_the_concurrency_limit_holds_through_cancels(
    queue_dir: Path, models_dir: Path, slow_csv: Path, blobs_csv: Path
) -> None:
    limit = 2
    async with TrainingService(queue_dir, models_dir, max_concurrent=limit, poll_interval_s=0.05) as svc:
        # One core each, so that two fit on a 2-core machine (tests/test_resources.py: wider claims).
        slow = [(await svc.submit(slow_spec(slow_csv), cpu_cores=1)).task_id for _ in range(3)]
        quick = [(await svc.submit(quick_spec(blobs_csv), cpu_cores=1)).task_id for _ in range(3)]
        seen_processes: list[int] = []  # live worker process groups, including ones being stopped
        workers: dict[int, str] = {}  # worker pid -> its task

        async def sample() -> None:
            while True:
                alive = {p for p in workers if process_group_alive(p)}
                records = {t: await svc.record(t) for t in slow + quick}  # read after: never overcounts
                # A completed task's worker may stay on to draw its plots at a low priority: it holds no
                # slot then. Any other live worker does, a cancelled one until its processes are gone.
                seen_processes.append(
                    sum(records[workers[p]].status is not TaskStatus.COMPLETED for p in alive)
                )
                workers.update({r.worker_pid: t for t, r in records.items() if r.worker_pid})
                await anyio.sleep(0.01)

        async with anyio.create_task_group() as tg:
            tg.start_soon(sample)

            async def both_running() -> bool:
                return all([(await svc.status(t)).status is TaskStatus.RUNNING for t in slow[:2]])

            await wait_until(both_running)
            for task_id in slow:  # cancel the running two and the waiting one; the quick ones fill in
                await svc.cancel(task_id)
            await svc.drain(timeout_s=120)
            tg.cancel_scope.cancel()

        # Each record's history says when it ran: never more than the limit at once, and the limit reached.
        records = [await svc.record(t) for t in slow + quick]
        assert most_running_at_once(records) == limit
        assert max(seen_processes) <= limit
        assert svc.peak_running <= limit
        assert all([(await svc.status(t)).status is TaskStatus.COMPLETED for t in quick])


def most_running_at_once(records: list[TaskRecord]) -> int:
    """The most tasks whose histories overlap in the running state (an attempt ends at its next move)."""
    events: list[tuple[float, int]] = []
    for r in records:
        for move, after in zip(r.history, r.history[1:], strict=False):
            if move.status is TaskStatus.RUNNING:
                events += [(move.at, 1), (after.at, -1)]
    running = most = 0
    for _, step in sorted(events):  # at equal times an end (-1) sorts before a start
        running += step
        most = max(most, running)
    return most


async def test_sigkill_of_the_server_loses_nothing_and_a_standby_resumes_the_search(
    queue_dir: Path,
    models_dir: Path,
    blobs_csv: Path,
    slow_csv: Path,
    server_process: subprocess.Popen[bytes],
) -> None:
    lock = queue_dir / ".owner.lock"
    # The server process owns the queue; this process shares it as a standby that submits and reads.
    await wait_until(lambda: lock.exists() and str(server_process.pid) in lock.read_text())
    async with TrainingService(queue_dir, models_dir, max_concurrent=1, poll_interval_s=0.2) as standby:
        assert not standby.is_owner
        search = (await standby.submit(quick_spec(slow_csv, n_trials=8, cv_folds=3))).task_id
        later = [(await standby.submit(quick_spec(blobs_csv, n_trials=2))).task_id for _ in range(2)]

        async def two_trials_done() -> bool:
            return bool(((await standby.record(search)).progress.trial or 0) >= 2)

        await wait_until(two_trials_done, timeout=60)
        worker = (await standby.record(search)).worker_pid
        assert worker is not None

        server_process.send_signal(signal.SIGKILL)
        server_process.wait(10)

        await wait_until(lambda: not process_group_alive(worker), timeout=10)  # no orphan keeps training
        await wait_until(lambda: standby.is_owner, timeout=10)
        await standby.drain(timeout_s=180)

        record = await standby.record(search)
        assert record.status is TaskStatus.COMPLETED
        assert record.attempts == 2
        assert any(t.status is TaskStatus.RETRYING for t in record.history)
        assert record.result is not None and record.result.n_trials_completed is not None
        # The resumed search kept its finished trials: of its 8, only those in flight in its (at most 2)
        # processes when the server died were lost, and they count as failed.
        meta = read_metadata(models_dir, record.result.model_id)
        assert meta["n_trials_completed"] + meta["n_trials_failed"] == 8
        assert meta["n_trials_failed"] <= 2
        logs = await standby.logs(search, tail=500)
        assert any("resuming the search" in line for line in logs)
        finished = [await standby.record(t) for t in later]
        assert all(r.status is TaskStatus.COMPLETED and r.attempts == 1 for r in finished)
        assert finished[0].started_at is not None and finished[1].started_at is not None
        assert finished[0].started_at < finished[1].started_at  # waiting tasks ran in their order


async def test_two_services_on_one_queue_elect_one_owner_and_the_other_takes_over(
    queue_dir: Path, models_dir: Path, blobs_csv: Path
) -> None:
    services: list[TrainingService] = []
    stop_first = anyio.Event()
    first_closed = anyio.Event()

    async def run_first() -> None:
        async with TrainingService(queue_dir, models_dir, poll_interval_s=0.1) as svc:
            services.append(svc)
            await stop_first.wait()
        first_closed.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run_first)
        await wait_until(lambda: bool(services) and services[0].is_owner)
        first = services[0]
        async with TrainingService(queue_dir, models_dir, poll_interval_s=0.1) as second:
            await anyio.sleep(0.3)
            assert not second.is_owner
            task_id = (await second.submit(quick_spec(blobs_csv))).task_id  # a non-owner can submit
            await first.drain(timeout_s=60)
            assert (await second.status(task_id)).status is TaskStatus.COMPLETED
            status = await second.queue_status()
            assert status.owner_pid == os.getpid() and not status.this_process_executes

            stop_first.set()
            await first_closed.wait()
            await wait_until(lambda: second.is_owner, timeout=5)
            again = (await second.submit(quick_spec(blobs_csv))).task_id
            await second.drain(timeout_s=60)
            assert (await second.status(again)).status is TaskStatus.COMPLETED


async def test_sigterm_of_the_server_hands_running_tasks_back_to_the_queue(
    queue_dir: Path, models_dir: Path, slow_csv: Path, server_process: subprocess.Popen[bytes]
) -> None:
    lock = queue_dir / ".owner.lock"
    await wait_until(lambda: lock.exists() and str(server_process.pid) in lock.read_text())
    async with TrainingService(queue_dir, models_dir, execute=False) as reader:
        task_id = (await reader.submit(slow_spec(slow_csv))).task_id

        async def searching() -> bool:
            return bool((await reader.status(task_id)).phase == "searching")

        await wait_until(searching, timeout=60)
        worker = (await reader.record(task_id)).worker_pid
        assert worker is not None

        server_process.send_signal(signal.SIGTERM)
        assert server_process.wait(10) == 0

        record = await reader.record(task_id)
        assert record.status is TaskStatus.QUEUED
        assert record.error is None
        assert not process_group_alive(worker)


async def test_a_worker_killed_from_outside_is_retried_and_the_search_resumes(
    queue_dir: Path, models_dir: Path, slow_csv: Path
) -> None:
    async with TrainingService(queue_dir, models_dir, max_concurrent=1, poll_interval_s=0.05) as svc:
        task_id = (await svc.submit(quick_spec(slow_csv, n_trials=6, cv_folds=3))).task_id

        async def two_trials_done() -> bool:
            return bool(((await svc.status(task_id)).trial or 0) >= 2)

        await wait_until(two_trials_done, timeout=60)
        pid = (await svc.record(task_id)).worker_pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)  # as the kernel's OOM killer would

        async def second_attempt() -> bool:
            return bool((await svc.record(task_id)).attempts == 2)

        await wait_until(second_attempt, timeout=30)
        done = await svc.wait(task_id, timeout_s=120)
        record = await svc.record(task_id)
        assert done.status is TaskStatus.COMPLETED
        retried = [t for t in record.history if t.status is TaskStatus.RETRYING]
        assert len(retried) == 1 and retried[0].note == "worker lost"
        assert record.result is not None and record.result.n_trials_completed is not None
        # The finished trials were kept; only those in flight in its (at most 2) processes were lost.
        meta = read_metadata(models_dir, record.result.model_id)
        assert meta["n_trials_completed"] + meta["n_trials_failed"] == 6
        assert meta["n_trials_failed"] <= 2


async def test_a_worker_that_keeps_dying_fails_as_worker_lost_after_max_attempts(
    queue_dir: Path, models_dir: Path, slow_csv: Path
) -> None:
    async with TrainingService(queue_dir, models_dir, max_concurrent=1, poll_interval_s=0.05) as svc:
        task_id = (await svc.submit(slow_spec(slow_csv), max_attempts=2)).task_id
        for attempt in (1, 2):

            async def searching(a: int = attempt) -> bool:
                record = await svc.record(task_id)
                return record.attempts == a and (await svc.status(task_id)).phase == "searching"

            await wait_until(
                searching,
                timeout=60,
            )
            pid = (await svc.record(task_id)).worker_pid
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
        done = await svc.wait(task_id, timeout_s=30)
        assert done.status is TaskStatus.FAILED
        assert done.error is not None and done.error.kind.value == "worker_lost"
        assert "signal 9" in done.error.message and "Gave up after 2 attempts" in (done.error.hint or "")


async def test_a_process_that_does_not_execute_can_cancel_a_task_running_in_another(
    queue_dir: Path, models_dir: Path, slow_csv: Path, server_process: subprocess.Popen[bytes]
) -> None:
    lock = queue_dir / ".owner.lock"
    await wait_until(lambda: lock.exists() and str(server_process.pid) in lock.read_text())
    async with TrainingService(queue_dir, models_dir, execute=False) as other:
        task_id = (await other.submit(slow_spec(slow_csv))).task_id

        async def searching() -> bool:
            return bool((await other.status(task_id)).phase == "searching")

        await wait_until(searching, timeout=60)
        worker = (await other.record(task_id)).worker_pid
        assert worker is not None

        view = await other.cancel(task_id, wait_s=10)

        assert view.status is TaskStatus.CANCELLED
        assert not process_group_alive(worker)
        assert server_process.poll() is None  # the owner carries on serving


async def test_a_parallel_search_shares_one_study_and_its_cancel_ends_every_helper(
    queue_dir: Path, models_dir: Path, blobs_csv: Path, slow_csv: Path
) -> None:
    async with TrainingService(queue_dir, models_dir, max_concurrent=1) as svc:
        quick = (await svc.submit(quick_spec(blobs_csv, n_trials=8, n_parallel_trials=2))).task_id
        done = await svc.wait(quick, timeout_s=120)
        assert done.status is TaskStatus.COMPLETED, done.error
        record = await svc.record(quick)
        assert record.result is not None and record.result.n_trials_completed is not None
        assert record.result.n_trials_completed == 8  # one study, shared by both processes
        assert any("running the search in 2 process(es)" in line for line in await svc.logs(quick))

        slow = (await svc.submit(slow_spec(slow_csv, n_parallel_trials=2))).task_id

        async def a_trial_done() -> bool:
            return bool(((await svc.status(slow)).trial or 0) >= 1)

        await wait_until(a_trial_done, timeout=60)
        pid = (await svc.record(slow)).worker_pid
        assert pid is not None
        helpers = [p for p in psutil.Process(pid).children() if p.status() != psutil.STATUS_ZOMBIE]
        assert helpers and all(os.getpgid(p.pid) == pid for p in helpers)
        assert (await svc.cancel(slow)).status is TaskStatus.CANCELLED
        assert not process_group_alive(pid)
        assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in helpers)


async def test_a_parallel_searchs_worker_and_helpers_start_no_blas_thread_pool(
    queue_dir: Path, models_dir: Path, slow_csv: Path
) -> None:
    # A pool restarted after a fork busy-waits beside the trials (trainers/threads.py). The worker runs
    # its main thread and its stop listener; a helper forked from it runs one thread.
    async with TrainingService(queue_dir, models_dir, max_concurrent=1) as svc:
        task_id = (await svc.submit(slow_spec(slow_csv, n_parallel_trials=2))).task_id
        worker_threads: set[int] = set()
        helper_threads: set[int] = set()
        with anyio.fail_after(60):
            while ((await svc.status(task_id)).trial or 0) < 2:
                pid = (await svc.record(task_id)).worker_pid
                if pid is not None and (await svc.status(task_id)).phase == "searching":
                    with contextlib.suppress(psutil.NoSuchProcess):
                        worker = psutil.Process(pid)
                        worker_threads.add(worker.num_threads())
                        helper_threads.update(
                            h.num_threads() for h in worker.children() if h.status() != psutil.STATUS_ZOMBIE
                        )
                await anyio.sleep(0.01)
        assert (await svc.cancel(task_id)).status is TaskStatus.CANCELLED
    assert worker_threads == {2}
    assert helper_threads == {1}


async def test_a_cancelled_scope_around_the_service_hands_its_running_task_back(
    queue_dir: Path, models_dir: Path, slow_csv: Path
) -> None:
    task_id = ""
    worker: int | None = None
    with anyio.CancelScope() as scope:  # as when an MCP client or host goes away mid-task
        async with TrainingService(queue_dir, models_dir, max_concurrent=1) as svc:
            task_id = (await svc.submit(slow_spec(slow_csv))).task_id

            async def searching() -> bool:
                return bool((await svc.status(task_id)).phase == "searching")

            await wait_until(searching, timeout=30)
            worker = (await svc.record(task_id)).worker_pid
            scope.cancel()
            await anyio.sleep(30)  # cancelled at once
    assert scope.cancelled_caught
    async with TrainingService(queue_dir, models_dir, execute=False) as reader:
        record = await reader.record(task_id)
    assert record.status is TaskStatus.QUEUED, record.history
    assert record.attempts == 0  # a clean hand-back does not use up an attempt
    assert worker is not None and not process_group_alive(worker)
