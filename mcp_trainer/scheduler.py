"""Which task runs next and how many at once; ownership of the queue; recovery at start-up.

Exactly one process executes the tasks of a queue directory: the one holding an exclusive `flock` on
`.owner.lock`. The kernel drops the lock when that process dies, however it dies, and another process
sharing the queue takes over within `poll_interval_s`. Every process may submit, read and cancel.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import time
from collections.abc import Iterable
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import psutil
from anyio.abc import TaskGroup
from pydantic import ValidationError

from mcp_trainer.executor import ProcessExecutor, WorkerHandle, kill_process_group
from mcp_trainer.models import ErrorKind, Progress, TaskError, TaskRecord, TaskResult, TaskStatus
from mcp_trainer.store import TaskStore

__all__ = ["OwnerLock", "Scheduler", "runnable_order"]

log = logging.getLogger(__name__)
_PERSIST_PROGRESS_EVERY_S = 1.0
_RETRY_DELAY_S = 1.0


def runnable_order(records: Iterable[TaskRecord], now: float) -> list[TaskRecord]:
    """Waiting tasks that may start now, in the order they should: priority, then first come first served."""
    ready = [
        r
        for r in records
        if r.status.is_waiting() and (r.next_attempt_at is None or r.next_attempt_at <= now)
    ]
    return sorted(ready, key=TaskRecord.sort_key_waiting)


class OwnerLock:
    """A non-blocking exclusive flock on `<queue>/.owner.lock`; its content names the holder (pid, limit)."""

    def __init__(self, queue_dir: Path, limit: int) -> None:
        self.path = queue_dir / ".owner.lock"
        self.limit = limit
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "limit": self.limit}).encode(), 0)
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def holder_info(self) -> dict[str, int]:
        """The pid and concurrency limit the current owner wrote; empty when nobody owns the queue."""
        try:
            info = json.loads(self.path.read_text() or "{}")
        except (FileNotFoundError, ValueError):
            return {}
        if not isinstance(info, dict) or not isinstance(info.get("pid"), int):
            return {}
        try:
            os.kill(info["pid"], 0)
        except ProcessLookupError:
            return {}  # written by an owner that died; nobody executes until another takes over
        except PermissionError:
            pass
        return {k: v for k, v in info.items() if isinstance(v, int)}


@dataclass
class _Running:
    record: TaskRecord
    handle: WorkerHandle | None = None
    progress: Progress | None = None
    persisted_at: float = 0.0
    finished: anyio.Event = field(default_factory=anyio.Event)
    cancel: bool = False


class Scheduler:
    """Runs waiting tasks in worker processes, never more than `limit` at once, while it owns the queue."""

    def __init__(
        self,
        store: TaskStore,
        executor: ProcessExecutor,
        *,
        limit: int,
        poll_interval_s: float = 0.5,
    ) -> None:
        if limit < 1:
            raise ValueError("the concurrency limit must be at least 1")
        self.store = store
        self.executor = executor
        self.limit = limit
        self.poll_interval_s = poll_interval_s
        self.lock = OwnerLock(store.root, limit)
        self._running: dict[str, _Running] = {}
        self._wake = anyio.Event()
        self._shutting_down = False
        self._tg: TaskGroup | None = None
        self.peak_running = 0

    # -- what others read ----------------------------------------------------------------------------

    @property
    def is_owner(self) -> bool:
        return self.lock.held

    def running_ids(self) -> list[str]:
        return list(self._running)

    def live_progress(self, task_id: str) -> Progress | None:
        entry = self._running.get(task_id)
        return entry.progress if entry else None

    def wake(self) -> None:
        self._wake.set()

    # -- the owner's loop ----------------------------------------------------------------------------

    async def run(self, warm_up: bool = True) -> None:
        """Wait to own the queue, recover it, then schedule until cancelled."""
        while not self.lock.try_acquire():
            await anyio.sleep(self.poll_interval_s)
        log.info("pid %d owns the queue %s", os.getpid(), self.store.root)
        try:
            swept = self.store.sweep_temp_files()
            if swept:
                log.info("swept %d stale temporary files", swept)
            await anyio.to_thread.run_sync(self.recover)
            async with anyio.create_task_group() as tg:
                self._tg = tg
                if warm_up:
                    tg.start_soon(anyio.to_thread.run_sync, self.executor.warm_up)
                while True:
                    try:
                        self._fill(tg)
                        self._notice_remote_cancels(tg)
                    except Exception:  # e.g. a full disk: log it and try again next round
                        log.exception("scheduling round failed")
                    with anyio.move_on_after(self.poll_interval_s):
                        await self._wake.wait()
                    self._wake = anyio.Event()
        finally:
            self._tg = None
            self.lock.release()

    def recover(self) -> None:
        """Tasks marked running belong to a dead owner: end any worker of theirs, then retry or fail them."""
        for record in self.store.all():
            if record.status is not TaskStatus.RUNNING:
                continue
            _kill_leftover_worker(record)

            def requeue(r: TaskRecord) -> None:
                if r.status is not TaskStatus.RUNNING:
                    return
                if r.cancel_requested:
                    r.transition(TaskStatus.CANCELLED, "cancelled while its server was down")
                    return
                r.error = TaskError(
                    kind=ErrorKind.WORKER_LOST,
                    message=f"The server stopped while attempt {r.attempts} was running.",
                    hint="It is retried automatically; a search resumes with its finished trials.",
                )
                # The server's death is not the task's fault: it runs again whatever its attempt count.
                r.next_attempt_at = time.time()
                r.transition(TaskStatus.RETRYING, "server restarted")

            self.store.update(record.task_id, requeue)

    def _fill(self, tg: TaskGroup) -> None:
        if self._shutting_down:
            return
        while len(self._running) < self.limit:
            self.store.refresh()
            candidates = runnable_order(self.store.waiting(), time.time())
            started = False
            for candidate in candidates:
                record, claimed = self.store.update(candidate.task_id, _claim)
                if claimed:
                    entry = _Running(record)
                    self._running[record.task_id] = entry
                    self.peak_running = max(self.peak_running, len(self._running))
                    tg.start_soon(self._supervise, entry)
                    started = True
                    break
            if not started:
                return

    def _notice_remote_cancels(self, tg: TaskGroup) -> None:
        """Cancels asked for by another process sharing the queue arrive through the task file."""
        for task_id, entry in list(self._running.items()):
            if entry.cancel:
                continue
            try:
                if self.store.get(task_id).cancel_requested:
                    tg.start_soon(self.stop_task, task_id)
            except Exception:  # a vanished or unreadable file must not stop the loop
                log.exception("checking %s for a cancel request", task_id)

    # -- one task ------------------------------------------------------------------------------------

    async def _supervise(self, entry: _Running) -> None:
        task_id = entry.record.task_id
        outcome: tuple[str, dict[str, Any]] | None = None
        try:
            try:
                handle = await self.executor.start(entry.record)
            except Exception as exc:
                log.exception("could not start a worker for %s", task_id)
                outcome = ("error", {"kind": "internal", "message": f"the worker did not start: {exc}"})
            else:
                entry.handle = handle
                with contextlib.suppress(Exception):
                    self.store.update(task_id, lambda r: _note_worker(r, handle))
                if entry.cancel or self._shutting_down:
                    await self.executor.stop(handle)
                async with aclosing(self.executor.messages(handle)) as messages:
                    async for kind, payload in messages:
                        if kind == "progress":
                            progress = _progress_or_none(payload)
                            if progress is not None:
                                self._on_progress(entry, progress)
                        elif kind in ("result", "error", "stopped"):
                            outcome = (kind, payload)
            self._record_outcome(entry, outcome)
        except anyio.get_cancelled_exc_class():
            # The scope around the service was cancelled (a client or host went away): hand the task
            # back to the queue as a clean shutdown would, rather than leave it "running".
            with anyio.CancelScope(shield=True):
                self._shutting_down = True
                if entry.handle is not None:
                    await self.executor.stop(entry.handle)
                    await anyio.to_thread.run_sync(entry.handle.process.join, 5.0)
                self._record_outcome(entry, outcome)
            raise
        finally:
            self._running.pop(task_id, None)
            entry.finished.set()
            self.wake()

    def _record_outcome(self, entry: _Running, outcome: tuple[str, dict[str, Any]] | None) -> None:
        try:
            self.store.update(entry.record.task_id, lambda r: self._finish(r, entry, outcome))
        except Exception:  # the record stays "running" and is recovered at the next start
            log.exception("could not record the outcome of %s", entry.record.task_id)

    def _on_progress(self, entry: _Running, progress: Progress) -> None:
        phase_changed = entry.progress is None or entry.progress.phase != progress.phase
        entry.progress = progress
        now = time.monotonic()
        if phase_changed or now - entry.persisted_at >= _PERSIST_PROGRESS_EVERY_S:
            entry.persisted_at = now

            def save(r: TaskRecord) -> None:
                if r.status is TaskStatus.RUNNING:
                    r.progress = progress

            try:
                self.store.update(entry.record.task_id, save)
            except Exception:  # progress is advisory; the live copy stays in memory
                log.exception("could not save the progress of %s", entry.record.task_id)

    def _finish(self, r: TaskRecord, entry: _Running, outcome: tuple[str, dict[str, Any]] | None) -> None:
        if r.status is not TaskStatus.RUNNING:  # another process ended it meanwhile; terminal is final
            return
        if entry.progress is not None:
            r.progress = entry.progress
        kind, payload = outcome if outcome else ("lost", {})
        if kind == "result":
            r.result = TaskResult.model_validate(payload)
            r.error = None
            r.progress = r.progress.model_copy(update={"percent": 100.0, "phase": "done", "eta_s": 0.0})
            r.transition(TaskStatus.COMPLETED)
        elif r.cancel_requested or entry.cancel:
            r.cancel_requested = True
            r.transition(TaskStatus.CANCELLED, "cancelled on request")
        elif self._shutting_down:
            r.transition(TaskStatus.QUEUED, "the server shut down; the task waits for the next start")
            r.attempts = max(0, r.attempts - 1)  # a clean hand-back is not a failed attempt
        elif kind == "error":
            r.error = TaskError.model_validate(payload)
            _retry_or_fail(r, r.error.kind.value)
        else:
            code = entry.handle.process.exitcode if entry.handle else None
            how = (
                f"was killed by signal {-code}"
                if code is not None and code < 0
                else f"exited with code {code}"
            )
            r.error = TaskError(
                kind=ErrorKind.WORKER_LOST,
                message=f"The worker process {how} without reporting a result (attempt {r.attempts}).",
                hint="Often the system ran out of memory; the task is retried while attempts remain.",
            )
            _retry_or_fail(r, "worker lost")

    async def stop_task(self, task_id: str) -> None:
        """Stop a running task of this owner and wait until its processes are gone and its state is final."""
        entry = self._running.get(task_id)
        if entry is None:
            return
        entry.cancel = True
        with anyio.CancelScope(shield=True):
            if entry.handle is not None:
                await self.executor.stop(entry.handle)
            with anyio.move_on_after(10):
                await entry.finished.wait()

    async def shutdown(self) -> None:
        """Stop every worker; their tasks go back to the queue for the next start."""
        self._shutting_down = True
        entries = list(self._running.values())
        with anyio.CancelScope(shield=True):
            async with anyio.create_task_group() as tg:
                for entry in entries:
                    if entry.handle is not None:
                        tg.start_soon(self.executor.stop, entry.handle)
            with anyio.move_on_after(10):
                for entry in entries:
                    await entry.finished.wait()


def _claim(r: TaskRecord) -> bool:
    if not r.status.is_waiting() or r.cancel_requested:
        return False
    r.transition(TaskStatus.RUNNING, f"attempt {r.attempts + 1}")
    r.attempts += 1
    r.owner_pid = os.getpid()
    r.next_attempt_at = None
    r.progress = Progress(phase="starting", percent=r.progress.percent if r.attempts > 1 else 0.0)
    return True


def _note_worker(r: TaskRecord, handle: WorkerHandle) -> None:
    if r.status is TaskStatus.RUNNING:
        r.worker_pid = handle.pid
        r.worker_started_at = handle.create_time


def _retry_or_fail(r: TaskRecord, note: str) -> None:
    assert r.error is not None
    if r.error.kind.is_retryable() and r.attempts < r.max_attempts:
        r.next_attempt_at = time.time() + _RETRY_DELAY_S * r.attempts
        r.transition(TaskStatus.RETRYING, note)
    else:
        if r.error.kind.is_retryable():
            r.error.hint = f"Gave up after {r.attempts} attempts. Submit it again once the cause is fixed."
        r.transition(TaskStatus.FAILED, note)


def _kill_leftover_worker(record: TaskRecord) -> None:
    """SIGKILL the process group of a worker that outlived its owner, if that pid is still that worker."""
    pid = record.worker_pid
    if pid is None:
        return
    try:
        proc = psutil.Process(pid)
        same = record.worker_started_at is None or abs(proc.create_time() - record.worker_started_at) < 0.5
        if proc.status() == psutil.STATUS_ZOMBIE:
            return  # already dead, waiting to be reaped
    except psutil.NoSuchProcess:
        return
    if same:
        log.warning("killing worker %d left running by a dead owner (task %s)", pid, record.task_id)
        kill_process_group(pid)


def _progress_or_none(payload: dict[str, Any]) -> Progress | None:
    """A worker's progress report; a malformed one is logged and dropped, never fatal to the scheduler."""
    try:
        return Progress.model_validate(payload)
    except ValidationError as exc:
        log.warning("ignoring a malformed progress report: %s", exc)
        return None
