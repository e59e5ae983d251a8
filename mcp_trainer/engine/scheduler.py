"""Which task runs next and how many at once, while this process owns the queue; recovery at start-up.

Exactly one process executes the tasks of a queue directory (owner.py); every process may submit, read
and cancel. The scheduler runs on the event loop, and every read or write of a task file it makes runs
in a worker thread (the store blocks on the disk and on the queue-wide lock).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import time
from collections.abc import Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskGroup

from mcp_trainer.artifacts.model_dir import delete_model_dir, sweep_unfinished
from mcp_trainer.artifacts.plots_state import mark_plots_missing
from mcp_trainer.engine import dependencies, outcome
from mcp_trainer.engine.alerts import AlertRules, TaskWatch, merge, task_alerts
from mcp_trainer.engine.executor import Executor, RunHandle
from mcp_trainer.engine.metrics import Machine, MetricsHistory
from mcp_trainer.engine.order import runnable_order
from mcp_trainer.engine.owner import OwnerInfo, OwnerLock
from mcp_trainer.engine.processes import end_leftover_worker, pid_alive
from mcp_trainer.engine.starts import AdmissionConfig, Starts
from mcp_trainer.engine.store import TaskStore
from mcp_trainer.errors import TrainerError
from mcp_trainer.ids import model_id_for
from mcp_trainer.offload import off_loop
from mcp_trainer.polling import poll_until
from mcp_trainer.records import Alert, Progress, TaskRecord, TaskStatus
from mcp_trainer.specs.resources import Grant

__all__ = ["Scheduler"]

log = logging.getLogger(__name__)
_PERSIST_PROGRESS_EVERY_S = 1.0
_STOP_WAIT_S = 10.0
_AFTER_RESULT_WAIT_S = 10.0  # at shutdown, how long a completed task's worker may go on drawing its plots
_MAINTAIN_EVERY_S = 1.0
_SWEEP_EVERY_S = 60.0
_UNFINISHED_AFTER_S = 6 * 3600.0  # a model folder untouched this long is abandoned whoever named it
_REWRITE_ALERTS_S = 60.0  # alerts whose kinds did not change are rewritten (new figures) at most this often


@dataclass
class _Running:
    record: TaskRecord
    grant: Grant
    handle: RunHandle | None = None
    progress: Progress | None = None
    persisted_at: float = 0.0
    finished: anyio.Event = field(default_factory=anyio.Event)
    cancel: bool = False
    finish_sent: bool = False
    ending: tuple[str, dict[str, Any]] | None = None
    recorded: bool = False  # the ending is recorded (a result is, as soon as it arrives)
    after_done: bool = False  # the worker finished its work after the result (the report plots)
    watch: TaskWatch = field(default_factory=lambda: TaskWatch(time.time()))
    alerts: list[Alert] = field(default_factory=list)  # as last written to the record
    alerts_written_at: float = 0.0

    @property
    def holds_slot(self) -> bool:
        """Whether it counts against the concurrency limit and the machine's claims: until its result is
        recorded. After that its worker only draws the report plots, on idle CPU time only (SCHED_IDLE,
        worker.py), and the next task may start beside it; one granted GPUs keeps them until it exits (its
        CUDA context is still there)."""
        completed = self.recorded and self.ending is not None and self.ending[0] == "result"
        return not completed or bool(self.grant.gpus)


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
        metrics: MetricsHistory | None = None,
        admission: AdmissionConfig | None = None,
        alert_rules: AlertRules | None = None,
    ) -> None:
        if limit < 1:
            raise ValueError("the concurrency limit must be at least 1")
        self.store = store
        self.executor = executor
        self.models_dir = models_dir
        self.limit = limit
        self.metrics = metrics or MetricsHistory({"queue": store.root, "models": models_dir})
        self.starts = Starts(admission or AdmissionConfig(), limit)
        self.alert_rules = alert_rules or AlertRules()
        self.poll_interval_s = poll_interval_s
        self._lock = OwnerLock(store.layout, limit)
        self._running: dict[str, _Running] = {}
        self._wake = anyio.Event()
        self._shutting_down = False
        self._unrecorded: dict[str, outcome.Ending] = {}  # endings a write failure kept from the record
        self._maintained_at = 0.0
        self._swept_at = 0.0
        self.peak_running = 0
        self._warming: set[str] = set()  # task types the executor was asked to prepare for

    # -- what others read ----------------------------------------------------------------------------

    @property
    def is_owner(self) -> bool:
        return self._lock.held

    def owner_info(self) -> OwnerInfo:
        """The pid and limit of the process that executes this queue's tasks (blocking: a file read)."""
        return self._lock.holder_info()

    def _worker_pids(self) -> list[int]:
        return [e.handle.pid for e in self._running.values() if e.handle is not None and e.handle.pid]

    def running_ids(self) -> list[str]:
        return list(self._running)

    def live_progress(self, task_id: str) -> Progress | None:
        entry = self._running.get(task_id)
        return entry.progress if entry else None

    def pending_ending(self, task_id: str) -> outcome.Ending | None:
        """How a task's attempt ended when that could not be written to its task file yet (a full disk);
        it is written as soon as the disk has room."""
        return self._unrecorded.get(task_id)

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
                    tg.start_soon(self._warm_up, ())
                while True:
                    try:
                        if warm_up:
                            self._warm_for_waiting(tg)
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

    def _warm_for_waiting(self, tg: TaskGroup) -> None:
        """Have the executor prepare for the task types that wait and that it is not ready for (a
        fine-tune's forkserver imports torch for seconds: better while the task waits than after)."""
        cold = {r.task_type for r in self.store.waiting() if not self.executor.is_warm_for(r.task_type)}
        cold -= self._warming
        if cold:
            self._warming |= cold
            tg.start_soon(self._warm_up, sorted(cold))

    async def _warm_up(self, task_types: Sequence[str]) -> None:
        try:
            await anyio.to_thread.run_sync(self.executor.warm_up, task_types)
        except Exception:  # the first task of the type starts it anyway, and says so if it cannot
            log.exception("could not prepare the workers of %s", ", ".join(task_types) or "the tabular tasks")

    def recover(self, supervised: frozenset[str] = frozenset()) -> int:
        """Tasks marked running that this owner does not supervise were left by an owner that died (or an
        ending this owner could not record): end any worker of theirs, then run them again (or fail them,
        past the recoveries allowed). Returns how many. Blocking."""
        found = 0
        for record in self.store.live_now():
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
        if self.metrics.due():
            sample = await off_loop(self.metrics.sample, self._worker_pids())
            await self._check_alerts(sample.own_rss_gb, sample.at)
        if now - self._swept_at >= _SWEEP_EVERY_S:
            await self._sweep()
        for task_id, end in list(self._unrecorded.items()):
            if await off_loop(self._write_ending, task_id, end):
                del self._unrecorded[task_id]
        supervised = frozenset(self._running) | frozenset(self._unrecorded)
        taken_back = await off_loop(self.recover, supervised)
        if taken_back:
            log.warning("took back %d task(s) marked running that no worker of this owner runs", taken_back)
        await off_loop(self.store.save_index_if_due)  # so that the next start-up parses few task files

    async def _check_alerts(self, rss_gb: dict[int, float], now: float) -> None:
        """Raise or clear the running tasks' alerts (alerts.py) in their records. A record is written when
        the alerts' kinds or severities change, or their figures every minute."""
        for entry in list(self._running.values()):
            if entry.recorded:  # completed: its worker only draws plots, and its record is final
                continue
            pid = entry.handle.pid if entry.handle is not None else None
            found = task_alerts(
                entry.record.task_id,
                entry.watch,
                rss_gb=rss_gb.get(pid) if pid else None,
                memory_claim_gb=entry.grant.memory_gb,
                now=now,
                rules=self.alert_rules,
            )
            alerts = merge(entry.alerts, found)
            same_kinds = [(a.kind, a.severity) for a in alerts] == [
                (a.kind, a.severity) for a in entry.alerts
            ]
            if same_kinds and (alerts == entry.alerts or now - entry.alerts_written_at < _REWRITE_ALERTS_S):
                continue
            entry.alerts, entry.alerts_written_at = alerts, now
            try:
                await off_loop(
                    self.store.update, entry.record.task_id, lambda r, a=alerts: outcome.note_alerts(r, a)
                )
            except Exception:  # advisory, like progress
                log.exception("could not save the alerts of %s", entry.record.task_id)

    async def _sweep(self) -> None:
        """Remove what writers that died left half-done: temporary task files, model directories being
        assembled or deleted (a worker killed while saving its model, e.g. by a cancel)."""
        self._swept_at = time.monotonic()
        files = await off_loop(self.store.sweep_temp_files)
        dirs = await off_loop(sweep_unfinished, self.models_dir, pid_alive, _UNFINISHED_AFTER_S)
        if files or dirs:
            log.info("swept %d stale temporary file(s) and %d unfinished model folder(s)", files, dirs)

    async def _fill(self, tg: TaskGroup) -> None:
        """Start waiting tasks, in start order, while the machine has room for them (starts.py)."""
        if self.metrics.latest() is None:
            await off_loop(self.metrics.sample)
        while not self._shutting_down:
            held = [(e.record.user_id, e.grant) for e in self._running.values() if e.holds_slot]
            claimed = await off_loop(self._claim_next, held)
            if claimed is None:
                return
            record, grant = claimed
            entry = _Running(record, grant)
            self._running[record.task_id] = entry
            self.peak_running = max(self.peak_running, sum(e.holds_slot for e in self._running.values()))
            tg.start_soon(self._supervise, entry)

    def machine(self) -> Machine:
        """What the machine has now, from the latest metrics sample."""
        m = self.metrics
        return Machine.of(m.cpus, m.memory_total_gb, m.latest(), m.other_cpu_percent())

    def _claim_next(self, held: list[tuple[str | None, Grant]]) -> tuple[TaskRecord, Grant] | None:
        """Claim the next task the machine has room for, with its grant; note why the others examined wait.
        None when none may start now. Blocking."""
        self.store.refresh()
        plan = self.starts.plan(runnable_order(self._startable(), time.time()), held, self.machine())
        for task_id, reason in plan.reasons.items():
            self._note_waiting(task_id, reason)
        if plan.pick is None:
            return None
        candidate, grant = plan.pick
        record, claimed = self.store.update(candidate.task_id, lambda r: outcome.claim(r, grant))
        return (record, grant) if claimed else None

    def _startable(self) -> list[TaskRecord]:
        """The waiting tasks whose dependencies allow them to start; the others are told why they wait, or
        cancelled when a task they depend on failed or was cancelled. Blocking."""
        ready: list[TaskRecord] = []
        for record in self.store.waiting():
            found = dependencies.verdict(record, self.store.status_of)
            if found.ready:
                ready.append(record)
            elif found.cancel is not None:
                cancel = functools.partial(outcome.cancel_for_dependency, reason=found.cancel)
                self.store.update(record.task_id, cancel)
                log.info("cancelled %s: %s", record.task_id, found.cancel)
            elif found.wait is not None:
                self._note_waiting(record.task_id, found.wait)
        return ready

    def _note_waiting(self, task_id: str, reason: str) -> None:
        try:
            current = self.store.get(task_id)
            if current.waiting_for != reason:
                self.store.update(task_id, lambda r: outcome.note_waiting(r, reason))
        except Exception:  # a task removed meanwhile, a full disk: the reason is only a courtesy
            log.debug("could not note why %s waits", task_id, exc_info=True)

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
            await self._record_or_follow_up(entry)
        except anyio.get_cancelled_exc_class():
            # The scope around the service was cancelled (a client or host went away): hand the task
            # back to the queue as a clean shutdown would, rather than leave it "running".
            with anyio.CancelScope(shield=True):
                self._shutting_down = True
                if entry.handle is not None:
                    await self.executor.stop(entry.handle)
                    await self.executor.wait_gone(entry.handle, 5.0)
                await self._record_or_follow_up(entry)
            raise
        finally:
            self._running.pop(task_id, None)
            entry.finished.set()
            self.wake()

    async def _run_attempt(self, entry: _Running) -> None:
        task_id = entry.record.task_id
        try:
            handle = await self.executor.start(
                entry.record, cpu_share=entry.grant.cpu_cores, gpus=entry.grant.gpus
            )
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
                elif kind == "result":
                    # The model is saved: the task is completed now, while its worker goes on drawing the
                    # report plots; its slot is free for the next task (`holds_slot`).
                    entry.ending = (kind, payload)
                    await self._record(entry)
                    self.wake()
                elif kind in ("error", "stopped"):
                    entry.ending = (kind, payload)
                elif kind == "after_done":
                    entry.after_done = True

    async def _record_or_follow_up(self, entry: _Running) -> None:
        """Once the worker is gone: record its ending, or, when its result was recorded already, mark the
        plots it did not draw missing (it was killed, or crashed, after the result)."""
        if not entry.recorded:
            await self._record(entry)
            return
        if entry.after_done or entry.ending is None or entry.ending[0] != "result":
            return
        model_id = str(entry.ending[1].get("model_id"))
        how = entry.handle.exit_description() if entry.handle else "ended"
        reason = f"the worker {how} after the task completed, before it drew this plot; train again to get it"
        try:
            if await off_loop(mark_plots_missing, self.models_dir, model_id, reason):
                log.warning("model %s: its worker %s before drawing all its plots", model_id, how)
        except Exception:  # the reader says they are missing all the same (plots_state.py)
            log.exception("could not mark the missing plots of %s", model_id)

    async def _record(self, entry: _Running) -> None:
        """Write how the attempt ended; when the write fails (a full disk), keep the ending and retry it
        about once a second until it is recorded. The entry counts as recorded only once the write is
        done (or kept for a retry): a completed task frees its slot then (`holds_slot`), so that no new task
        starts while the task file still says this one runs."""
        kind, payload = entry.ending or (None, {})
        end = outcome.Ending(
            kind=kind,
            payload=payload,
            progress=entry.progress,
            cancelled=entry.cancel,
            shutting_down=self._shutting_down,
            exit_description=entry.handle.exit_description() if entry.handle else "did not start",
        )
        try:
            if not await off_loop(self._write_ending, entry.record.task_id, end):
                self._unrecorded[entry.record.task_id] = end
        finally:  # cancelled meanwhile, the write still ends in its thread: never record twice
            entry.recorded = True

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
        entry.watch.observe(progress, time.time())
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
                        tg.start_soon(self._stop_on_shutdown, entry)
            with anyio.move_on_after(_STOP_WAIT_S):
                for entry in entries:
                    await entry.finished.wait()

    async def _stop_on_shutdown(self, entry: _Running) -> None:
        """A completed task's worker only draws its plots: give it a while to finish them."""
        assert entry.handle is not None
        if entry.recorded:
            with anyio.move_on_after(_AFTER_RESULT_WAIT_S):
                await entry.finished.wait()
            if entry.finished.is_set():
                return
        await self.executor.stop(entry.handle)


def _noting(handle: RunHandle) -> Callable[[TaskRecord], None]:
    return lambda r: outcome.note_worker(r, handle.pid, handle.started_at)


def _saving(progress: Progress) -> Callable[[TaskRecord], None]:
    return lambda r: outcome.save_progress(r, progress)
