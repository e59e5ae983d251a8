"""Which task runs next and how many at once, while this process owns the queue; recovery at start-up.

Exactly one process executes the tasks of a queue directory (owner.py); every process may submit, read
and cancel. The scheduler runs on the event loop, and every read or write of a task file it makes runs
in a worker thread (the store blocks on the disk and on the queue-wide lock).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskGroup

from mcp_trainer.artifacts.model_dir import delete_model_dir, sweep_unfinished
from mcp_trainer.engine import outcome
from mcp_trainer.engine.executor import Executor, RunHandle
from mcp_trainer.engine.order import runnable_order
from mcp_trainer.engine.owner import OwnerInfo, OwnerLock
from mcp_trainer.engine.processes import end_leftover_worker, pid_alive
from mcp_trainer.engine.store import TaskStore
from mcp_trainer.errors import TrainerError
from mcp_trainer.ids import model_id_for
from mcp_trainer.machine import available_cpus
from mcp_trainer.offload import off_loop
from mcp_trainer.polling import poll_until
from mcp_trainer.records import Progress, TaskRecord, TaskStatus

__all__ = ["Scheduler"]

log = logging.getLogger(__name__)
_PERSIST_PROGRESS_EVERY_S = 1.0
_STOP_WAIT_S = 10.0
_MAINTAIN_EVERY_S = 1.0
_SWEEP_EVERY_S = 60.0
_UNFINISHED_AFTER_S = 6 * 3600.0  # a model folder untouched this long is abandoned whoever named it


@dataclass
class _Running:
    record: TaskRecord
    cpu_share: int = 1
    handle: RunHandle | None = None
    progress: Progress | None = None
    persisted_at: float = 0.0
    finished: anyio.Event = field(default_factory=anyio.Event)
    cancel: bool = False
    finish_sent: bool = False
    ending: tuple[str, dict[str, Any]] | None = None


class Scheduler:
    """Runs waiting tasks through an executor, never more than `limit` at once, while it owns the queue."""

    def __init__(
        self,
        store: TaskStore,
        executor: Executor,
        models_dir: Path,
        *,
        limit: int,
        poll_interval_s: float = 0.5,
    ) -> None:
        if limit < 1:
            raise ValueError("the concurrency limit must be at least 1")
        self.store = store
        self.executor = executor
        self.models_dir = models_dir
        self.limit = limit
        self.poll_interval_s = poll_interval_s
        self._lock = OwnerLock(store.layout, limit)
        self._running: dict[str, _Running] = {}
        self._wake = anyio.Event()
        self._shutting_down = False
        self._unrecorded: dict[str, outcome.Ending] = {}  # endings a write failure kept from the record
        self._maintained_at = 0.0
        self._swept_at = 0.0
        self.peak_running = 0

    # -- what others read ----------------------------------------------------------------------------

    @property
    def is_owner(self) -> bool:
        return self._lock.held

    def owner_info(self) -> OwnerInfo:
        """The pid and limit of the process that executes this queue's tasks (blocking: a file read)."""
        return self._lock.holder_info()

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

        async def acquired() -> bool:
            return await off_loop(self._lock.try_acquire)

        await poll_until(acquired, interval_s=self.poll_interval_s)
        log.info("pid %d owns the queue %s", os.getpid(), self.store.root)
        try:
            await self._sweep()
            await off_loop(self.recover)
            async with anyio.create_task_group() as tg:
                if warm_up:
                    tg.start_soon(anyio.to_thread.run_sync, self.executor.warm_up)
                while True:
                    try:
                        await self._fill(tg)
                        await self._notice_remote_requests(tg)
                        await self._maintain()
                    except Exception:  # e.g. a full disk: log it and try again next round
                        log.exception("scheduling round failed")
                    with anyio.move_on_after(self.poll_interval_s):
                        await self._wake.wait()
                    self._wake = anyio.Event()
        finally:
            with anyio.CancelScope(shield=True):
                await off_loop(self._lock.release)

    def recover(self, supervised: frozenset[str] = frozenset()) -> int:
        """Tasks marked running that this owner does not supervise were left by an owner that died (or an
        ending this owner could not record): end any worker of theirs, then run them again (or fail them,
        past the recoveries allowed). Returns how many. Blocking."""
        found = 0
        for record in self.store.all():
            if record.status is TaskStatus.RUNNING and record.task_id not in supervised:
                found += 1
                end_leftover_worker(self.store.layout, record)
                self.store.update(record.task_id, outcome.requeue_orphan)
        return found

    async def _maintain(self) -> None:
        """About once a second: say this owner is alive, retry endings a full disk kept from being
        recorded, and take back tasks marked running that nobody supervises."""
        now = time.monotonic()
        if now - self._maintained_at < _MAINTAIN_EVERY_S:
            return
        self._maintained_at = now
        await off_loop(self._lock.beat)
        if now - self._swept_at >= _SWEEP_EVERY_S:
            await self._sweep()
        for task_id, end in list(self._unrecorded.items()):
            if await off_loop(self._write_ending, task_id, end):
                del self._unrecorded[task_id]
        supervised = frozenset(self._running) | frozenset(self._unrecorded)
        taken_back = await off_loop(self.recover, supervised)
        if taken_back:
            log.warning("took back %d task(s) marked running that no worker of this owner runs", taken_back)

    async def _sweep(self) -> None:
        """Remove what writers that died left half-done: temporary task files, model directories being
        assembled or deleted (a worker killed while saving its model, e.g. by a cancel)."""
        self._swept_at = time.monotonic()
        files = await off_loop(self.store.sweep_temp_files)
        dirs = await off_loop(sweep_unfinished, self.models_dir, pid_alive, _UNFINISHED_AFTER_S)
        if files or dirs:
            log.info("swept %d stale temporary file(s) and %d unfinished model folder(s)", files, dirs)

    async def _fill(self, tg: TaskGroup) -> None:
        while not self._shutting_down and len(self._running) < self.limit:
            claimed = await off_loop(self._claim_next)
            if claimed is None:
                return
            record, waiting = claimed
            # Its share of the CPUs: split among the tasks running or waiting now, at most `limit` of them.
            sharing = min(self.limit, len(self._running) + 1 + waiting)
            entry = _Running(record, cpu_share=max(1, available_cpus() // sharing))
            self._running[record.task_id] = entry
            self.peak_running = max(self.peak_running, len(self._running))
            tg.start_soon(self._supervise, entry)

    def _claim_next(self) -> tuple[TaskRecord, int] | None:
        """Claim the first runnable task, in start order, and count the tasks still waiting; None when
        there is none. Blocking."""
        self.store.refresh()
        for candidate in runnable_order(self.store.waiting(), time.time()):
            record, claimed = self.store.update(candidate.task_id, outcome.claim)
            if claimed:
                return record, len(self.store.waiting())
        return None

    async def _notice_remote_requests(self, tg: TaskGroup) -> None:
        """Cancels and finish requests asked for by another process sharing the queue arrive through the
        task file."""
        watched = [task_id for task_id, entry in self._running.items() if not entry.cancel]
        if not watched:
            return
        for task_id, request in await off_loop(self._requests, watched):
            if request == "cancel":
                tg.start_soon(self.stop_task, task_id)
            else:
                await self.finish_task(task_id)

    def _requests(self, task_ids: list[str]) -> list[tuple[str, str]]:
        asked: list[tuple[str, str]] = []
        for task_id in task_ids:
            try:
                record = self.store.get(task_id)
            except Exception:  # a vanished or unreadable file must not stop the loop
                log.exception("checking %s for a cancel request", task_id)
                continue
            if record.cancel_requested:
                asked.append((task_id, "cancel"))
            elif record.finish_requested:
                entry = self._running.get(task_id)
                if entry is not None and not entry.finish_sent:
                    asked.append((task_id, "finish"))
        return asked

    # -- one task ------------------------------------------------------------------------------------

    async def _supervise(self, entry: _Running) -> None:
        task_id = entry.record.task_id
        try:
            await self._run_attempt(entry)
            await self._record(entry)
        except anyio.get_cancelled_exc_class():
            # The scope around the service was cancelled (a client or host went away): hand the task
            # back to the queue as a clean shutdown would, rather than leave it "running".
            with anyio.CancelScope(shield=True):
                self._shutting_down = True
                if entry.handle is not None:
                    await self.executor.stop(entry.handle)
                    await self.executor.wait_gone(entry.handle, 5.0)
                await self._record(entry)
            raise
        finally:
            self._running.pop(task_id, None)
            entry.finished.set()
            self.wake()

    async def _run_attempt(self, entry: _Running) -> None:
        task_id = entry.record.task_id
        try:
            handle = await self.executor.start(entry.record, cpu_share=entry.cpu_share)
        except Exception as exc:
            log.exception("could not start a worker for %s", task_id)
            entry.ending = ("error", {"kind": "internal", "message": f"the worker did not start: {exc}"})
            return
        entry.handle = handle
        with contextlib.suppress(Exception):
            await off_loop(self.store.update, task_id, _noting(handle))
        if entry.cancel or self._shutting_down:
            await self.executor.stop(handle)
        async with aclosing(self.executor.messages(handle)) as messages:
            async for kind, payload in messages:
                if kind == "progress":
                    progress = outcome.progress_or_none(payload)
                    if progress is not None:
                        await self._on_progress(entry, progress)
                elif kind in ("result", "error", "stopped"):
                    entry.ending = (kind, payload)

    async def _record(self, entry: _Running) -> None:
        """Write how the attempt ended; when the write fails (a full disk), keep the ending and retry it
        about once a second until it is recorded."""
        kind, payload = entry.ending or (None, {})
        end = outcome.Ending(
            kind=kind,
            payload=payload,
            progress=entry.progress,
            cancelled=entry.cancel,
            shutting_down=self._shutting_down,
            exit_description=entry.handle.exit_description() if entry.handle else "did not start",
        )
        if not await off_loop(self._write_ending, entry.record.task_id, end):
            self._unrecorded[entry.record.task_id] = end

    def _write_ending(self, task_id: str, end: outcome.Ending) -> bool:
        """Blocking; False when the write failed (it is logged). A model saved by an attempt whose task
        was cancelled meanwhile is removed: a requested cancel wins, and its model is never published."""
        try:
            record, _ = self.store.update(task_id, lambda r: outcome.finish(r, end))
        except Exception:
            log.exception("could not record the outcome of %s; retrying", task_id)
            return False
        if record.status is TaskStatus.CANCELLED:  # the attempt may have published its model as it ended
            model_id = model_id_for(task_id)
            with contextlib.suppress(TrainerError, OSError):  # never published (the usual case)
                delete_model_dir(self.models_dir, model_id)
                log.info(
                    "task %s was cancelled as it saved model %s: the model was removed", task_id, model_id
                )
        return True

    async def _on_progress(self, entry: _Running, progress: Progress) -> None:
        phase_changed = entry.progress is None or entry.progress.phase != progress.phase
        entry.progress = progress
        now = time.monotonic()
        if phase_changed or now - entry.persisted_at >= _PERSIST_PROGRESS_EVERY_S:
            entry.persisted_at = now
            try:
                await off_loop(self.store.update, entry.record.task_id, _saving(progress))
            except Exception:  # progress is advisory; the live copy stays in memory
                log.exception("could not save the progress of %s", entry.record.task_id)

    async def stop_task(self, task_id: str) -> None:
        """Stop a running task of this owner and wait until its processes are gone and its state is final."""
        entry = self._running.get(task_id)
        if entry is None:
            return
        entry.cancel = True
        with anyio.CancelScope(shield=True):
            if entry.handle is not None:
                await self.executor.stop(entry.handle)
            with anyio.move_on_after(_STOP_WAIT_S):
                await entry.finished.wait()

    async def finish_task(self, task_id: str) -> None:
        """Ask a running task of this owner to end its work now and finish with the best so far."""
        entry = self._running.get(task_id)
        if entry is None or entry.finish_sent or entry.handle is None:
            return  # not started yet: the next round sends it (the request is in the task file)
        entry.finish_sent = True
        await self.executor.finish(entry.handle)

    async def shutdown(self) -> None:
        """Stop every worker; their tasks go back to the queue for the next start."""
        self._shutting_down = True
        entries = list(self._running.values())
        with anyio.CancelScope(shield=True):
            async with anyio.create_task_group() as tg:
                for entry in entries:
                    if entry.handle is not None:
                        tg.start_soon(self.executor.stop, entry.handle)
            with anyio.move_on_after(_STOP_WAIT_S):
                for entry in entries:
                    await entry.finished.wait()


def _noting(handle: RunHandle) -> Callable[[TaskRecord], None]:
    return lambda r: outcome.note_worker(r, handle.pid, handle.started_at)


def _saving(progress: Progress) -> Callable[[TaskRecord], None]:
    return lambda r: outcome.save_progress(r, progress)
