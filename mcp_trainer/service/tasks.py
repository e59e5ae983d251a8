"""The task half of the Python API: submit, read, list, cancel and wait for tasks.

Every read or write of a task file runs in a worker thread (`off_loop`): the store blocks on the disk
and on the queue-wide lock, and another process may be scanning or writing the same directory.
"""

from __future__ import annotations

import dataclasses
import os
import time
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import aiofiles
from pydantic import ValidationError

from mcp_trainer.engine import dependencies, outcome
from mcp_trainer.engine.admission import Claims
from mcp_trainer.engine.archive import ArchivedTask
from mcp_trainer.engine.metrics import MetricsHistory
from mcp_trainer.engine.order import runnable_order
from mcp_trainer.engine.processes import end_leftover_worker
from mcp_trainer.engine.store import TaskStore
from mcp_trainer.engine.summary import TaskSummary
from mcp_trainer.errors import (
    InvalidInputError,
    InvalidStateError,
    TrainerError,
    closest,
    describe_validation_error,
)
from mcp_trainer.files import NotARegularFile, open_no_follow
from mcp_trainer.ids import check_task_id, new_task_id
from mcp_trainer.machine import machine_status
from mcp_trainer.offload import off_loop
from mcp_trainer.polling import poll_until
from mcp_trainer.preflight.finetune import check_finetune
from mcp_trainer.preflight.script import check_script
from mcp_trainer.preflight.tabular import check_dataset
from mcp_trainer.records import Priority, TaskRecord, TaskStatus, Transition, with_warning
from mcp_trainer.service.audit import AuditRecord, audited
from mcp_trainer.service.core import ServiceCore
from mcp_trainer.service.monitoring import alerts_of, fresh_samples, history_of
from mcp_trainer.service.paging import Place, check_limit, decode_cursor, encode_cursor
from mcp_trainer.service.resources import resolve_request
from mcp_trainer.service.roots import Roots
from mcp_trainer.service.workflow import check_workflow
from mcp_trainer.specs import TASK_TYPES, AnySpec, parse_spec
from mcp_trainer.specs.cleanup import CleanupSpec
from mcp_trainer.specs.evaluate import EvaluateSpec
from mcp_trainer.specs.finetune import FinetuneSpec
from mcp_trainer.specs.options import SubmitOptions
from mcp_trainer.specs.preprocess import PreprocessSpec
from mcp_trainer.specs.resources import ResourceRequest
from mcp_trainer.specs.script import ScriptSpec
from mcp_trainer.specs.sources import parse_source
from mcp_trainer.views.tasks import Claimed, QueueStatus, TaskListItem, TaskPage, TaskStatusView, iso

__all__ = ["ProgressCallback", "TaskMethods"]

_UNWRITTEN = (
    "its attempt ended ({status}) but its task file could not be written (is the queue's disk full?); "
    "this server writes it as soon as there is room, and until then other servers still see it running"
)

ProgressCallback = Callable[[TaskStatusView], Awaitable[None]]
MAX_LOG_LINES = 5000
OWNER_SILENT_S = 5.0  # an owner that has not said it is alive for this long is not responding
_WAIT_POLL_S = 0.1


class TaskMethods(ServiceCore):
    """Submit, read, list, cancel and wait for tasks."""

    # The waiting tasks' start order, recomputed only when the store's cache changed (its `version`), so
    # that reads stay fast with many thousands of task files.
    _positions: tuple[int, dict[str, int]] | None = None

    async def submit(
        self,
        spec: Mapping[str, Any] | AnySpec,
        *,
        name: str | None = None,
        user_id: str | None = None,
        priority: Priority | str = Priority.NORMAL,
        max_attempts: int = 3,
        idempotency_key: str | None = None,
        cpu_cores: int | None = None,
        memory_gb: float | None = None,
        gpu_count: float | None = None,
        gpu_memory_gb: float | None = None,
        depends_on: Sequence[str] | None = None,
        on_dependency_failure: str = "cancel",
    ) -> TaskStatusView:
        """Validate the spec and its data, persist the task, and return its status at once. A call with
        the `idempotency_key` of an earlier one returns that task instead (see `submit_once`). The task
        starts when the machine has the cores, memory and GPUs it asks for (defaults by task type).

        Raises InvalidInputError (nothing is written) when the task type, a parameter or the data is
        unusable, or the request is more than the machine has; InvalidStateError when the queue is at a
        cap (`max_queued`, `max_queued_per_user`).
        """
        async with self._audit_submit(spec, user_id) as entry:
            options = _options(
                name=name,
                user_id=user_id,
                priority=priority,
                max_attempts=max_attempts,
                idempotency_key=idempotency_key,
                cpu_cores=cpu_cores,
                memory_gb=memory_gb,
                gpu_count=gpu_count,
                gpu_memory_gb=gpu_memory_gb,
                depends_on=None if depends_on is None else list(depends_on),
                on_dependency_failure=on_dependency_failure,
            )
            view, created = await self._submit_once(spec, options)
            entry.update(task_id=view.task_id, created=created)
        return view

    async def submit_once(
        self, spec: Mapping[str, Any] | AnySpec, options: SubmitOptions
    ) -> tuple[TaskStatusView, bool]:
        """`submit`, saying whether this call created the task: False when an earlier call with the same
        `options.idempotency_key` did (and its task is returned). The same key with other arguments is
        refused (InvalidInputError), so that a key never stands for two different tasks."""
        async with self._audit_submit(spec, options.user_id) as entry:
            view, created = await self._submit_once(spec, options)
            entry.update(task_id=view.task_id, created=created)
        return view, created

    def _audit_submit(self, spec: Mapping[str, Any] | AnySpec, user_id: object) -> AuditRecord:
        """The audit log's record of a submit: its user, task type and data path, or the script a script
        task runs (no other argument)."""
        given = spec if isinstance(spec, Mapping) else spec.model_dump()
        named = ("task_type", "data_source", "script")
        described = {k: given.get(k) for k in named if isinstance(given.get(k), str)}
        command = given.get("command")
        if isinstance(command, list) and command and isinstance(command[0], str):
            described["program"] = command[0]
        return self._audit.record("submit", task_id=None, user_id=user_id, **described)

    async def _submit_once(
        self, spec: Mapping[str, Any] | AnySpec, options: SubmitOptions, stage: tuple[str, str] | None = None
    ) -> tuple[TaskStatusView, bool]:
        """Submit; `stage` is the (pipeline_id, stage name) a pipeline's stage task belongs to."""
        parts = self._parts()
        parsed = parse_spec(spec)
        machine = parts.scheduler.metrics.machine_facts

        def checked() -> tuple[AnySpec, ResourceRequest, str | None]:  # one trip to a worker thread
            wait = _check_dependencies(parts.store, options)
            task_spec = check_spec(parsed, self.roots, self.models_dir, parts.store)
            return task_spec, resolve_request(task_spec, options, machine()), wait

        task_spec, resources, waiting_for = await off_loop(checked)
        now = time.time()
        record = TaskRecord(
            task_id=new_task_id(now),
            name=options.name,
            user_id=options.user_id,
            priority=options.priority,
            spec=task_spec,
            created_at=now,
            max_attempts=options.max_attempts,
            attempt_budget=options.max_attempts,
            idempotency_key=options.idempotency_key,
            resources=resources,
            depends_on=options.depends_on or [],
            on_dependency_failure=options.on_dependency_failure,
            waiting_for=waiting_for,
            pipeline_id=stage[0] if stage else None,
            stage=stage[1] if stage else None,
        )
        record.history.append(Transition(status=TaskStatus.QUEUED, at=now, note="submitted"))
        try:
            stored = await off_loop(parts.store.create, record, self.queue_caps.admit)
        except OSError as exc:
            raise TrainerError(
                f"The task could not be saved in {parts.store.root}: {exc.strerror or exc}.",
                "Free disk space or fix the queue directory's permissions, then submit again.",
            ) from None
        if stored is not record:
            _check_same_task(stored, record)
            return await off_loop(lambda: self._view(self._live(stored))), False
        parts.scheduler.wake()
        return await off_loop(self._new_task_view, record), True

    # -- read ----------------------------------------------------------------------------------------

    async def record(self, task_id: str) -> TaskRecord:
        """The full stored record of a task (archived ones too), with live progress where this process
        runs it."""
        return (await off_loop(self._record, task_id))[0]

    async def status(self, task_id: str) -> TaskStatusView:
        """Compact numeric status (of archived tasks too); raises InvalidInputError or TaskNotFoundError
        for a bad id."""
        return await off_loop(lambda: self._view(*self._record(task_id)))

    def _record(self, task_id: str) -> tuple[TaskRecord, bool]:
        """The record, and whether it comes from the archive."""
        record, archived = self._parts().store.find(check_task_id(task_id))
        return self._live(record), archived

    def _live(self, record: TaskRecord) -> TaskRecord:
        """The record as this process knows it: live progress of a task it runs, and an ending it could not
        write yet (a full disk) applied, with a warning saying so."""
        scheduler = self._parts().scheduler
        if record.status is not TaskStatus.RUNNING:
            return record
        pending = scheduler.pending_ending(record.task_id)
        if pending is not None:
            draft = record.model_copy(deep=True)
            outcome.finish(draft, pending)
            note = _UNWRITTEN.format(status=draft.status.value)
            draft.progress.warnings = with_warning(draft.progress.warnings, note)
            return draft
        live = scheduler.live_progress(record.task_id)
        return record if live is None else record.model_copy(update={"progress": live})

    def _view(self, record: TaskRecord, archived: bool = False) -> TaskStatusView:
        if archived:
            return TaskStatusView.of(record, archived=True)
        return TaskStatusView.of(record, queue_position=self._queue_positions().get(record.task_id))

    def _new_task_view(self, record: TaskRecord) -> TaskStatusView:
        """A just-submitted task's view. Its queue position is counted in one pass over the waiting tasks
        rather than by ranking them all (`_queue_positions`: every submit changes the queue, and ranking
        1,800 waiting tasks took 3-5 ms of each submit). Blocking."""
        positions = self._positions
        if positions is not None and positions[0] == self._parts().store.version:
            return self._view(record)
        if record.depends_on and record.waiting_for:
            return self._view(record)  # it waits for its dependencies, not for a slot
        key = record.sort_key_waiting()
        waiting = self._startable()
        ahead = sum(1 for r in waiting if r.sort_key_waiting() < key)
        free = self._free_slots()
        return TaskStatusView.of(record, queue_position=ahead + 1 - free if ahead >= free else None)

    def _queue_positions(self) -> dict[str, int]:
        """1-based start order of every waiting task that waits for a slot; the first ones have none when
        a process executes the queue and has free slots: they start within a moment (blocking)."""
        store = self._parts().store
        positions = self._positions
        if positions is None or positions[0] != store.version:
            version = store.version
            order = runnable_order(self._startable(), float("inf"))
            free = self._free_slots()
            ranks = {r.task_id: i + 1 - free for i, r in enumerate(order) if i >= free}
            self._positions = positions = (version, ranks)
        return positions[1]

    def _startable(self) -> list[TaskRecord]:
        """Waiting tasks that wait only for a slot (not for tasks they depend on). Blocking."""
        store = self._parts().store
        return dependencies.startable(store.waiting(), store.status_of)

    def _free_slots(self) -> int:
        scheduler = self._parts().scheduler
        if scheduler.is_owner:
            limit = self.max_concurrent
        else:
            owner = scheduler.owner_info()
            if not owner:
                return 0  # nobody executes: every waiting task waits
            limit = int(owner.get("limit", self.max_concurrent))
        running = self._parts().store.counts()[TaskStatus.RUNNING]
        return max(0, limit - running)

    async def list_tasks(
        self,
        *,
        status: TaskStatus | str | None = None,
        task_type: str | None = None,
        user_id: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> TaskPage:
        """Tasks newest first, filtered, one page at a time (pass `next_cursor` back as `cursor`)."""
        check_limit(limit)
        wanted = _parse_status(status)
        if task_type is not None and task_type not in TASK_TYPES:
            guess = closest(task_type, TASK_TYPES)
            raise InvalidInputError(
                f"Unknown task_type {task_type!r}" + (f" (did you mean {guess!r}?)." if guess else "."),
                f"Known types: {', '.join(TASK_TYPES)}.",
            )
        after = decode_cursor(cursor) if cursor else None

        def matches(task: _Listed) -> bool:  # short-circuits: a record's task_type is a property
            return (
                (wanted is None or task.status is wanted)
                and (task_type is None or task.task_type == task_type)
                and (user_id is None or task.user_id == user_id)
            )

        unfiltered = wanted is None and task_type is None and user_id is None
        archive = wanted is None or wanted.is_terminal()
        return await off_loop(self._page, None if unfiltered else matches, archive, limit, after)

    def _page(
        self,
        matches: Callable[[_Listed], bool] | None,
        archive: bool,
        limit: int,
        after: Place | None,
    ) -> TaskPage:
        """One page of the listing: live tasks newest first, then archived ones newest first (`archive`:
        whether the filters may match any). Built from the store's summaries; only a running task's item
        needs its full record (live progress). Blocking."""
        store = self._parts().store
        store.refresh()
        waiting = self._queue_positions()
        oldest_first = store.summaries()
        live = oldest_first if matches is None else [s for s in oldest_first if matches(s)]
        archived: list[ArchivedTask] = []
        if archive:
            store.archive.refresh()
            if entries := store.archive.newest_first():
                held = store.ids()  # after a crash mid-archive a task is in both
                archived = [e for e in entries if e.task_id not in held and (matches is None or matches(e))]
        total = len(live) + len(archived)
        end, skipped = len(live), 0  # live[:end] and archived[skipped:] come after the cursor
        if after is not None:
            in_archive, key = after[0], after[1:]
            end = 0 if in_archive else bisect_left(live, key, key=_order_key)
            skipped = _first_older(archived, key) if in_archive else 0
        shown = live[max(0, end - limit) : end][::-1]
        shown_archived = archived[skipped : skipped + limit - len(shown)]
        items = [self._item(s, waiting.get(s.task_id)) for s in shown]
        for entry in shown_archived:
            record = store.archive.read(entry)
            if record is not None:
                items.append(TaskListItem.of(TaskStatusView.of(record, archived=True)))
        next_cursor = None
        if end + len(archived) - skipped > limit:
            if shown_archived:
                last = shown_archived[-1]
                next_cursor = encode_cursor(last.created_ns, last.task_id, archived=True)
            elif shown:
                next_cursor = encode_cursor(shown[-1].created_ns, shown[-1].task_id)
        return TaskPage(tasks=items, total=total, next_cursor=next_cursor)

    def _item(self, summary: TaskSummary, queue_position: int | None) -> TaskListItem:
        """A live task's list item: from its summary, but a running task's from its record and the live
        progress this process may hold of it."""
        if summary.status is TaskStatus.RUNNING:
            record = self._parts().store.live_record(summary.task_id)
            if record is not None:
                return TaskListItem.of(TaskStatusView.of(self._live(record)))
        return TaskListItem.of_summary(summary, queue_position=queue_position)

    async def queue_status(self) -> QueueStatus:
        """True counts from the task files, the limit, who executes, and the machine's load."""
        return await off_loop(self._queue_status)

    def _queue_status(self) -> QueueStatus:
        return QueueStatus(**self._queue_facts(), machine=machine_status(self.models_dir))

    def _queue_facts(self) -> dict[str, Any]:
        """The queue's status but the machine's load, whose sample costs more (NVML calls). Blocking."""
        parts = self._parts()
        records = parts.store.live_now()  # what has not ended: the running tasks' grants and alerts
        counts = {s.value: n for s, n in parts.store.counts().items()}
        owner = parts.scheduler.owner_info()
        executes = parts.scheduler.is_owner
        limit = self.max_concurrent if executes else owner.get("limit", self.max_concurrent)
        silent = None if "beat" not in owner else round(max(0.0, time.time() - owner["beat"]), 1)
        upcoming = runnable_order(parts.store.waiting(), float("inf"))[:5]
        samples = fresh_samples(parts.scheduler)
        return dict(
            running=counts[TaskStatus.RUNNING.value],
            queued=counts[TaskStatus.QUEUED.value] + counts[TaskStatus.RETRYING.value],
            concurrency_limit=int(limit),
            max_queued=self.queue_caps.max_queued,
            max_queued_per_user=self.queue_caps.max_queued_per_user,
            counts=counts,
            running_tasks=sorted(r.task_id for r in records if r.status is TaskStatus.RUNNING),
            next_up=[r.task_id for r in upcoming],
            next_waiting_for=upcoming[0].waiting_for if upcoming else None,
            claimed=_claimed(records, parts.scheduler.metrics),
            thresholds=dataclasses.asdict(self.admission.thresholds),
            owner_pid=int(owner["pid"]) if "pid" in owner else None,
            owner_responding=None if silent is None else silent < OWNER_SILENT_S,
            owner_silent_s=silent,
            this_process_executes=executes,
            queue_dir=str(self.queue_dir),
            models_dir=str(self.models_dir),
            alerts=alerts_of(records, samples, self.alert_rules),
            history=history_of(samples),
        )

    async def logs(self, task_id: str, tail: int = 100) -> list[str]:
        """The last `tail` lines the task's worker logged (all attempts)."""
        store = self._parts().store
        record, archived = await off_loop(store.find, check_task_id(task_id))
        if archived:
            raise InvalidStateError(
                f"Task {task_id} ended on {iso(record.finished_at)} and was archived since (queue/archive/); "
                "its log was removed then.",
                "get_task_status still reads it.",
            )
        if not 1 <= tail <= MAX_LOG_LINES:
            raise InvalidInputError(f"tail must be between 1 and {MAX_LOG_LINES} (got {tail}).")
        try:
            fd = await off_loop(open_no_follow, store.layout.log_file(task_id), os.O_RDONLY)
        except FileNotFoundError:
            return []
        except NotARegularFile as exc:
            raise InvalidStateError(
                f"The log of {task_id} is {exc.strerror}, not a file written by its worker: not shown.",
                "Whoever can write the queue directory put it there; remove it, and the next attempt "
                "starts a new log.",
            ) from None
        size = os.fstat(fd).st_size
        window = min(size, max(64 * 1024, tail * 400))
        async with aiofiles.open(fd, "rb") as f:
            await f.seek(size - window)
            data: bytes = await f.read()
        lines = data.decode("utf-8", errors="replace").splitlines()
        if window < size:
            lines = lines[1:]  # the first line of the window may be cut
        return lines[-tail:]

    # -- change and wait -----------------------------------------------------------------------------

    @audited("cancel", "task_id")
    async def cancel(self, task_id: str, *, wait_s: float = 10.0) -> TaskStatusView:
        """Cancel a task. A waiting one is cancelled at once and never starts; a running one is stopped
        (cooperatively, then SIGTERM, then SIGKILL to its process group) before this returns, or within
        `wait_s` when another process runs it. When that process does not respond (stopped, hung, dead),
        this one ends the task's worker itself and records the cancel. Raises InvalidStateError for a
        finished task."""
        parts = self._parts()
        check_task_id(task_id)
        before = await self._change(task_id, _request_cancel)
        if before is TaskStatus.RUNNING:
            if task_id in parts.scheduler.running_ids():
                await parts.scheduler.stop_task(task_id)
            else:
                parts.scheduler.wake()
                silent = False

                async def ended_or_unattended() -> bool:
                    nonlocal silent
                    if (await off_loop(parts.store.get, task_id)).status.is_terminal():
                        return True
                    silent = await off_loop(self._owner_silent)
                    return silent

                await poll_until(ended_or_unattended, interval_s=0.05, timeout_s=wait_s)
                if silent:
                    await off_loop(self._cancel_unattended, task_id)
        return await self.status(task_id)

    def _owner_silent(self) -> bool:
        """Whether no process answers for the queue: none owns it, or its owner has not said it is alive
        for OWNER_SILENT_S (stopped, hung). Blocking."""
        owner = self._parts().scheduler.owner_info()
        return not owner or time.time() - owner.get("beat", time.time()) >= OWNER_SILENT_S

    def _cancel_unattended(self, task_id: str) -> None:
        """End the worker of a running task whose owner does not respond (only a process that is provably
        that worker), and record the cancel. Blocking."""
        store = self._parts().store
        record = store.get(task_id)
        if record.status is not TaskStatus.RUNNING:
            return
        end_leftover_worker(store.layout, record)
        store.update(task_id, _cancelled_unattended)

    @audited("retry", "task_id")
    async def retry(self, task_id: str) -> TaskStatusView:
        """Queue a failed or cancelled task again, with a fresh budget of attempts; its history, attempt
        count and finished search trials are kept (a search resumes). Raises InvalidStateError for a
        task that is waiting, running or completed."""
        parts = self._parts()
        check_task_id(task_id)
        await self._change(task_id, outcome.requeue_on_request)
        parts.scheduler.wake()
        return await self.status(task_id)

    @audited("stop", "task_id")
    async def stop(self, task_id: str) -> TaskStatusView:
        """End a task's work now and finish it with the best result so far, which is saved as usual: a
        search ends the trials in flight and fits its best trial; a fine-tune stops training and saves its
        model. Returns at once; the task completes once its model is saved (a task that has nothing to
        keep yet ends cancelled). Raises InvalidStateError for a task that has not run or has ended."""
        parts = self._parts()
        check_task_id(task_id)
        await self._change(task_id, _request_finish)
        if task_id in parts.scheduler.running_ids():
            await parts.scheduler.finish_task(task_id)
        parts.scheduler.wake()
        return await self.status(task_id)

    async def wait(
        self, task_id: str, timeout_s: float, on_progress: ProgressCallback | None = None
    ) -> TaskStatusView:
        """Return when the task has ended or after `timeout_s`, whichever is first, with its status.

        `on_progress` is awaited whenever the progress changes. Cancelling the wait leaves the task running.
        """
        if timeout_s < 0:
            raise InvalidInputError("timeout_s must not be negative.")
        await self.status(task_id)  # a bad id fails now, not at the timeout
        last: list[tuple[Any, ...] | None] = [None]

        async def ended() -> bool:
            view = await self.status(task_id)
            if view.status.is_terminal():
                return True
            key = (view.status, view.progress, view.phase, view.trial)
            if on_progress is not None and key != last[0]:
                last[0] = key
                await on_progress(view)
            return False

        await poll_until(ended, interval_s=_WAIT_POLL_S, timeout_s=timeout_s)
        return await self.status(task_id)

    async def drain(self, timeout_s: float = 300.0) -> None:
        """Wait until no task is waiting or running (for scripts and tests); raises TimeoutError."""
        store = self._parts().store

        async def idle() -> bool:
            return not await off_loop(store.live_now)

        if not await poll_until(idle, interval_s=0.05, timeout_s=timeout_s):
            raise TimeoutError(f"tasks were still waiting or running after {timeout_s:g} s")


def _request_cancel(r: TaskRecord) -> TaskStatus:
    if r.status.is_terminal():
        raise InvalidStateError(
            f"Task {r.task_id} is already {r.status.value}; only queued or running tasks can be cancelled.",
            "Nothing was changed." + (" Its model stays available." if r.result else ""),
        )
    before = r.status
    r.cancel_requested = True
    if r.status.is_waiting():
        r.transition(TaskStatus.CANCELLED, "cancelled before it started")
    return before


def _cancelled_unattended(r: TaskRecord) -> None:
    if r.status is TaskStatus.RUNNING:
        r.transition(
            TaskStatus.CANCELLED, f"cancelled by pid {os.getpid()}: the queue's owner did not respond"
        )


def _request_finish(r: TaskRecord) -> None:
    if r.status.is_terminal():
        raise InvalidStateError(
            f"Task {r.task_id} is already {r.status.value}; there is nothing to stop.",
            "Nothing was changed." + (" Its model stays available." if r.result else ""),
        )
    if r.status is TaskStatus.QUEUED and r.attempts == 0:
        raise InvalidStateError(
            f"Task {r.task_id} has not started, so it has nothing to keep yet.",
            "Cancel it with cancel_training_task, or stop it once it runs.",
        )
    r.finish_requested = True


def _claimed(records: list[TaskRecord], metrics: MetricsHistory) -> Claimed:
    """What the running tasks' grants hold, from their task files (any process can tell)."""
    claims = Claims.of((r.user_id, r.grant) for r in records if r.status is TaskStatus.RUNNING and r.grant)
    return Claimed(
        cores=claims.cores,
        cores_total=metrics.cpus,
        memory_gb=round(claims.memory_gb, 2),
        memory_total_gb=round(metrics.memory_total_gb, 2),
        gpus=claims.gpu_shares,
    )


def _check_same_task(earlier: TaskRecord, new: TaskRecord) -> None:
    """Refuse an idempotency key reused for a different task."""
    fields = ("spec", "name", "user_id", "priority", "max_attempts", "resources", "depends_on")
    differ = [f for f in fields if getattr(earlier, f) != getattr(new, f)]
    if differ:
        raise InvalidInputError(
            f"idempotency_key {new.idempotency_key!r} was already used for task {earlier.task_id}, with "
            f"other {', '.join(differ)}.",
            "Use a new key for a new task; retry with the same arguments to get that task back.",
        )


def _check_dependencies(store: TaskStore, options: SubmitOptions) -> str | None:
    """Refuse a `depends_on` that names a malformed, repeated or unknown task, or (unless the task runs
    anyway) one that already failed or was cancelled; return why the task will wait, if it will. Blocking."""
    parents = options.depends_on or []
    for task_id in parents:
        check_task_id(task_id)
    repeated = sorted({t for t in parents if parents.count(t) > 1})
    if repeated:
        raise InvalidInputError(
            f"depends_on names {', '.join(repeated)} more than once.", "Name each task once."
        )
    if any(store.status_of(t) is None for t in parents):
        store.refresh()  # another process may have made it since this one last looked
    probe = TaskRecord.model_construct(
        depends_on=parents, on_dependency_failure=options.on_dependency_failure
    )
    for task_id in parents:
        if store.status_of(task_id) is None:
            raise InvalidInputError(
                f"depends_on names {task_id}, which this queue does not have.",
                "Use task ids from submit_training_task or list_training_tasks.",
            )
    found = dependencies.verdict(probe, store.status_of)
    if found.cancel is not None:
        raise InvalidInputError(
            f"This task would be cancelled at once: {found.cancel}.",
            "Retry that task first (retry_task), or submit with on_dependency_failure='run'.",
        )
    return found.wait


def _options(**given: Any) -> SubmitOptions:
    try:
        return SubmitOptions.model_validate(given)
    except ValidationError as exc:
        detail = describe_validation_error(exc, SubmitOptions.model_fields)
        raise InvalidInputError(f"Invalid parameters: {detail}.") from None


def check_spec(spec: AnySpec, roots: Roots, models_dir: Path, store: TaskStore) -> AnySpec:
    """The spec with absolute paths inside the roots, once its data (and the models or tasks it names)
    passed the checks (blocking: run in a thread). The paths are confined before anything is read."""
    if isinstance(spec, PreprocessSpec | EvaluateSpec | CleanupSpec):
        return check_workflow(spec, roots, models_dir, store)
    if isinstance(spec, FinetuneSpec):
        update = {
            "model_path": roots.model_dir(spec.model_path),
            "data_source": roots.data_file(spec.data_source),
        }
        if spec.eval_data_source is not None:
            update["eval_data_source"] = roots.data_file(spec.eval_data_source, "eval_data_source")
        return check_finetune(spec.model_copy(update=update))
    if isinstance(spec, ScriptSpec):
        return check_script(spec, roots.scripts)
    if parse_source(spec.data_source).path is not None:
        spec = spec.model_copy(update={"data_source": roots.data_file(spec.data_source)})
    check_dataset(spec)
    return spec


def _parse_status(status: TaskStatus | str | None) -> TaskStatus | None:
    if status is None:
        return None
    try:
        return TaskStatus(status)
    except ValueError:
        guess = closest(str(status), [s.value for s in TaskStatus])
        raise InvalidInputError(
            f"status {status!r} is not a task status" + (f" (did you mean {guess!r}?)." if guess else "."),
            f"Use one of: {', '.join(s.value for s in TaskStatus)}.",
        ) from None


class _Listed(Protocol):
    """What the listing filters on: a live task's record or an archived task's index entry."""

    @property
    def status(self) -> TaskStatus: ...
    @property
    def task_type(self) -> str: ...
    @property
    def user_id(self) -> str | None: ...


class _Ordered(Protocol):
    @property
    def created_ns(self) -> int: ...
    @property
    def task_id(self) -> str: ...


def _order_key(s: TaskSummary) -> tuple[int, str]:
    return (s.created_ns, s.task_id)


def _first_older(newest_first: Sequence[_Ordered], key: tuple[int, str]) -> int:
    """The index of the first entry older than `key` (created_ns, task_id) in a newest-first list."""
    low, high = 0, len(newest_first)
    while low < high:
        mid = (low + high) // 2
        entry = newest_first[mid]
        if (entry.created_ns, entry.task_id) < key:
            high = mid
        else:
            low = mid + 1
    return low
