"""The Python API: submit, status, list, cancel, wait, queue status, logs.

The MCP server is a thin face over it::

    async with TrainingService("queue", "trained_models") as svc:
        task = await svc.submit({"task_type": "svm_classification", "data_source": "/data/iris.csv",
                                 "target_column": "species"})
        done = await svc.wait(task.task_id, timeout_s=600)
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiofiles
import anyio
from anyio.abc import TaskGroup
from pydantic import ValidationError

from mcp_trainer.artifacts import REPORTS_DIR, delete_model_dir, list_metadata, model_dir, read_metadata
from mcp_trainer.datasources import parse_source
from mcp_trainer.errors import InvalidInputError, InvalidStateError, TrainerError, describe_validation_error
from mcp_trainer.executor import ProcessExecutor
from mcp_trainer.finetune_preflight import MAX_NEW_TOKENS, check_finetune, check_finetune_installed
from mcp_trainer.ids import check_model_id, check_task_id, new_task_id
from mcp_trainer.model_reports import MAX_REPORT_BYTES, load_report
from mcp_trainer.models import Priority, TaskRecord, TaskStatus, Transition
from mcp_trainer.preflight import check_dataset
from mcp_trainer.scheduler import Scheduler, runnable_order
from mcp_trainer.specs import FINETUNE_TASK_TYPES, TASK_TYPES, FinetuneSpec, TabularSpec
from mcp_trainer.store import TaskStore
from mcp_trainer.system import machine_status
from mcp_trainer.views import (
    Generation,
    ModelInfo,
    ModelPage,
    ModelReport,
    ModelSummary,
    Predictions,
    QueueStatus,
    TaskPage,
    TaskStatusView,
)

__all__ = ["DEFAULT_CONCURRENCY", "TrainingService"]

DEFAULT_CONCURRENCY = 3
MAX_PAGE = 200
ProgressCallback = Callable[[TaskStatusView], Awaitable[None]]


class TrainingService:
    """A training queue in `queue_dir` whose models go to `models_dir`.

    With `execute=True` this process competes to own the queue and, while it does, runs tasks in worker
    processes, at most `max_concurrent` at once. Any number of services may share one queue directory;
    all of them can submit, read and cancel.
    """

    def __init__(
        self,
        queue_dir: str | os.PathLike[str] = "queue",
        models_dir: str | os.PathLike[str] = "trained_models",
        *,
        max_concurrent: int = DEFAULT_CONCURRENCY,
        execute: bool = True,
        poll_interval_s: float = 0.5,
        warm_up: bool = True,
    ) -> None:
        if max_concurrent < 1:
            raise InvalidInputError("max_concurrent must be at least 1.")
        self.queue_dir = Path(queue_dir).expanduser().resolve()
        self.models_dir = Path(models_dir).expanduser().resolve()
        self.max_concurrent = max_concurrent
        self.execute = execute
        self.poll_interval_s = poll_interval_s
        self._warm_up = warm_up
        self.store: TaskStore | None = None
        self.scheduler: Scheduler | None = None
        self._tg: TaskGroup | None = None
        self._exit: contextlib.AsyncExitStack | None = None
        self._newest: tuple[int, list[TaskRecord]] | None = None
        self._positions: tuple[int, dict[str, int]] | None = None

    # -- life ----------------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self.models_dir.mkdir(parents=True, exist_ok=True)
        self.store = await anyio.to_thread.run_sync(TaskStore, self.queue_dir)
        await anyio.to_thread.run_sync(self.store.refresh)
        executor = ProcessExecutor(self.queue_dir, self.models_dir)
        self.scheduler = Scheduler(
            self.store, executor, limit=self.max_concurrent, poll_interval_s=self.poll_interval_s
        )
        self._exit = contextlib.AsyncExitStack()
        if self.execute:
            self._tg = await self._exit.enter_async_context(anyio.create_task_group())
            self._tg.start_soon(self.scheduler.run, self._warm_up)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._exit is not None and self.scheduler is not None and self.store is not None
        with anyio.CancelScope(shield=True):
            await self.scheduler.shutdown()
        if self._tg is not None:
            self._tg.cancel_scope.cancel()
        await self._exit.__aexit__(exc_type, exc, tb)
        self.store.close()

    async def shutdown_workers(self) -> None:
        """Stop every task this process runs and hand it back to the queue (it resumes at the next start)."""
        _, scheduler = self._parts()
        await scheduler.shutdown()

    def _parts(self) -> tuple[TaskStore, Scheduler]:
        if self.store is None or self.scheduler is None:
            raise RuntimeError("use `async with TrainingService(...)` before calling it")
        return self.store, self.scheduler

    @property
    def is_owner(self) -> bool:
        return self.scheduler is not None and self.scheduler.is_owner

    # -- submit --------------------------------------------------------------------------------------

    async def submit(
        self,
        spec: Mapping[str, Any] | TabularSpec | FinetuneSpec,
        *,
        name: str | None = None,
        user_id: str | None = None,
        priority: Priority | str = Priority.NORMAL,
        max_attempts: int = 3,
    ) -> TaskStatusView:
        """Validate the spec and its data, persist the task, and return its status at once.

        Raises InvalidInputError (nothing is written) when the task type, a parameter or the data is unusable.
        """
        store, scheduler = self._parts()
        task_spec = _parse_spec(spec)
        try:
            prio = Priority(priority)
        except ValueError:
            raise InvalidInputError(
                f"priority {priority!r} is not one of high, normal, low.", "Use 'normal' unless it is urgent."
            ) from None
        if not 1 <= max_attempts <= 10:
            raise InvalidInputError(f"max_attempts must be between 1 and 10 (got {max_attempts}).")
        if name is not None and len(name) > 200:
            raise InvalidInputError("name is longer than 200 characters; shorten it.")
        task_spec = await anyio.to_thread.run_sync(_checked, task_spec)
        now = time.time()
        record = TaskRecord(
            task_id=new_task_id(now),
            name=name,
            user_id=user_id,
            priority=prio,
            spec=task_spec,
            created_at=now,
            max_attempts=max_attempts,
        )
        record.history.append(Transition(status=TaskStatus.QUEUED, at=now, note="submitted"))
        try:
            store.create(record)
        except OSError as exc:
            raise TrainerError(
                f"The task could not be saved in {store.root}: {exc.strerror or exc}.",
                "Free disk space or fix the queue directory's permissions, then submit again.",
            ) from None
        scheduler.wake()
        return self._view(record)

    # -- read ----------------------------------------------------------------------------------------

    def record(self, task_id: str) -> TaskRecord:
        """The full stored record of a task, with live progress where this process runs it."""
        store, _ = self._parts()
        return self._live(store.get(check_task_id(task_id)))

    def status(self, task_id: str) -> TaskStatusView:
        """Compact numeric status; raises InvalidInputError or TaskNotFoundError for a bad id."""
        return self._view(self.record(task_id))

    # Derived orders are recomputed only when the store's cache changed (its `version`), so that reads stay
    # fast with many thousands of task files.

    def _newest_first(self) -> list[TaskRecord]:
        store, _ = self._parts()
        if self._newest is None or self._newest[0] != store.version:
            records = sorted(store.cached(), key=lambda r: (r.created_ns, r.task_id), reverse=True)
            self._newest = (store.version, records)
        return self._newest[1]

    def _queue_positions(self) -> dict[str, int]:
        """1-based start order of every waiting task."""
        store, _ = self._parts()
        if self._positions is None or self._positions[0] != store.version:
            order = runnable_order(store.waiting(), float("inf"))
            self._positions = (store.version, {r.task_id: i + 1 for i, r in enumerate(order)})
        return self._positions[1]

    def _view(self, record: TaskRecord) -> TaskStatusView:
        return TaskStatusView.of(record, queue_position=self._queue_positions().get(record.task_id))

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
        store, _ = self._parts()
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidInputError(f"limit must be between 1 and {MAX_PAGE} (got {limit}).")
        wanted_status = _parse_status(status)
        if task_type is not None and task_type not in TASK_TYPES:
            raise InvalidInputError(
                f"Unknown task_type {task_type!r}.", f"Known types: {', '.join(TASK_TYPES)}."
            )
        after = _decode_cursor(cursor) if cursor else None
        store.refresh()
        waiting = self._queue_positions()
        records = [
            r
            for r in self._newest_first()
            if (wanted_status is None or r.status is wanted_status)
            and (task_type is None or r.task_type == task_type)
            and (user_id is None or r.user_id == user_id)
        ]
        total = len(records)
        if after is not None:
            records = [r for r in records if (r.created_ns, r.task_id) < after]
        page = records[:limit]
        views = [TaskStatusView.of(self._live(r), queue_position=waiting.get(r.task_id)) for r in page]
        more = len(records) > limit
        return TaskPage(
            tasks=views, total=total, next_cursor=_encode_cursor(page[-1]) if more and page else None
        )

    def _live(self, record: TaskRecord) -> TaskRecord:
        _, scheduler = self._parts()
        live = scheduler.live_progress(record.task_id)
        if live is not None and record.status is TaskStatus.RUNNING:
            return record.model_copy(update={"progress": live})
        return record

    async def queue_status(self) -> QueueStatus:
        """True counts from the task files, the limit, who executes, and the machine's load."""
        store, scheduler = self._parts()
        records = store.all()
        counts = {s.value: 0 for s in TaskStatus}
        for r in records:
            counts[r.status.value] += 1
        owner = scheduler.lock.holder_info()
        limit = owner.get("limit", self.max_concurrent) if not scheduler.is_owner else self.max_concurrent
        machine = await anyio.to_thread.run_sync(machine_status, self.models_dir)
        return QueueStatus(
            running=counts[TaskStatus.RUNNING.value],
            queued=counts[TaskStatus.QUEUED.value] + counts[TaskStatus.RETRYING.value],
            concurrency_limit=int(limit),
            counts=counts,
            running_tasks=sorted(r.task_id for r in records if r.status is TaskStatus.RUNNING),
            next_up=[r.task_id for r in runnable_order(store.waiting(), float("inf"))[:5]],
            owner_pid=owner.get("pid"),
            this_process_executes=scheduler.is_owner,
            queue_dir=str(self.queue_dir),
            models_dir=str(self.models_dir),
            machine=machine,
        )

    async def logs(self, task_id: str, tail: int = 100) -> list[str]:
        """The last `tail` lines the task's worker logged (all attempts)."""
        store, _ = self._parts()
        store.get(check_task_id(task_id))
        if not 1 <= tail <= 5000:
            raise InvalidInputError(f"tail must be between 1 and 5000 (got {tail}).")
        path = store.log_path(task_id)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return []
        window = min(size, max(64 * 1024, tail * 400))
        async with aiofiles.open(path, "rb") as f:
            await f.seek(size - window)
            data: bytes = await f.read()
        lines = data.decode("utf-8", errors="replace").splitlines()
        if window < size:
            lines = lines[1:]  # the first line of the window may be cut
        return lines[-tail:]

    # -- models --------------------------------------------------------------------------------------

    async def list_models(
        self,
        *,
        task_type: str | None = None,
        user_id: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> ModelPage:
        """Saved models newest first, filtered, one page at a time."""
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidInputError(f"limit must be between 1 and {MAX_PAGE} (got {limit}).")
        metas = await anyio.to_thread.run_sync(list_metadata, self.models_dir)
        metas = [
            m
            for m in metas
            if (task_type is None or m.get("task_type") == task_type)
            and (user_id is None or m.get("user_id") == user_id)
        ]
        start = 0
        if cursor is not None:
            check_model_id(cursor)
            start = next((i + 1 for i, m in enumerate(metas) if m["model_id"] == cursor), None) or 0
            if start == 0:
                raise InvalidInputError("cursor names no listed model.", "Omit it to start from the newest.")
        page = metas[start : start + limit]
        more = start + limit < len(metas)
        return ModelPage(
            models=[ModelSummary.of(m) for m in page],
            total=len(metas),
            next_cursor=page[-1]["model_id"] if more and page else None,
        )

    async def model_info(self, model_id: str) -> ModelInfo:
        """Metadata and metrics of a saved model; raises InvalidInputError for an unknown id."""
        meta = await anyio.to_thread.run_sync(read_metadata, self.models_dir, check_model_id(model_id))
        reports_dir = model_dir(self.models_dir, model_id) / REPORTS_DIR
        reports = sorted(p.name for p in reports_dir.iterdir()) if reports_dir.is_dir() else []
        return ModelInfo.full(meta, reports)

    async def model_report(
        self, model_id: str, plots: list[str] | None = None, *, max_bytes: int = MAX_REPORT_BYTES
    ) -> tuple[ModelReport, dict[str, bytes]]:
        """A model's readable summary and its report plots: the report, and the PNG bytes of the plots it
        carries by plot name. `plots` picks some (None: all, []: none); beyond `max_bytes` in total the
        rest are listed but left out, and `note` says how to ask for them. Raises InvalidInputError for
        an unknown model or plot name."""
        check_model_id(model_id)
        return await anyio.to_thread.run_sync(
            lambda: load_report(self.models_dir, model_id, plots, max_bytes=max_bytes)
        )

    async def delete_model(self, model_id: str) -> None:
        """Remove a saved model's directory; raises InvalidInputError for an unknown id."""
        await anyio.to_thread.run_sync(delete_model_dir, self.models_dir, check_model_id(model_id))

    async def predict(
        self,
        model_id: str,
        *,
        rows: list[dict[str, Any]] | None = None,
        data_source: str | None = None,
        timeout_s: float = 40.0,
    ) -> Predictions:
        """Predict with a saved model in a separate process (the model file is checked against its sha256)."""
        _, scheduler = self._parts()
        check_model_id(model_id)
        if (rows is None) == (data_source is None):
            raise InvalidInputError("Give either rows or data_source, not both and not neither.")
        if rows is not None and not rows:
            raise InvalidInputError("rows is empty; give at least one row.")
        if rows is not None and len(rows) > 10_000:
            raise InvalidInputError(
                f"{len(rows)} rows is more than the 10000 one call predicts.", "Split them."
            )
        meta = await anyio.to_thread.run_sync(read_metadata, self.models_dir, model_id)  # clear if unknown
        target = "mcp_trainer.trainers.predict:predict"
        if meta.get("task_type") in FINETUNE_TASK_TYPES:
            if meta.get("task_type") != "text_classification_finetune":
                raise InvalidInputError(
                    f"Model {model_id} is a {meta.get('task_type')} model, which generates text.",
                    "Use generate for it; predict is for classifiers and regressors.",
                )
            check_finetune_installed()
            target = "mcp_trainer.trainers.finetune.infer:predict_text"
            timeout_s = max(timeout_s, 120.0)
        if data_source is not None:
            source = parse_source(data_source)
            if source.path is not None:
                data_source = str(source.path.resolve())
                if not source.path.is_file():
                    raise InvalidInputError(f"data_source {data_source!r} does not exist.")
        out = await scheduler.executor.run_job(
            target,
            {
                "models_dir": str(self.models_dir),
                "model_id": model_id,
                "rows": rows,
                "data_source": data_source,
            },
            timeout_s,
        )
        return Predictions.model_validate(out)

    async def generate(
        self,
        model_id: str,
        prompt: str,
        *,
        max_new_tokens: int = 64,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int = 0,
        timeout_s: float = 120.0,
    ) -> Generation:
        """A short completion from a causal LM fine-tune, computed in a separate process."""
        _, scheduler = self._parts()
        check_model_id(model_id)
        if not prompt:
            raise InvalidInputError("prompt is empty.", "Give the text to continue.")
        if not 1 <= max_new_tokens <= MAX_NEW_TOKENS:
            raise InvalidInputError(f"max_new_tokens must be between 1 and {MAX_NEW_TOKENS}.")
        if not (0.0 <= temperature <= 5.0 and 0.0 < top_p <= 1.0):
            raise InvalidInputError("temperature must be in [0, 5] and top_p in (0, 1].")
        meta = await anyio.to_thread.run_sync(read_metadata, self.models_dir, model_id)
        if meta.get("task_type") != "causal_lm_finetune":
            raise InvalidInputError(
                f"Model {model_id} is a {meta.get('task_type')} model; "
                "generate needs a causal_lm_finetune model.",
                "Use predict for classifiers; list_models shows each model's task type.",
            )
        check_finetune_installed()
        out = await scheduler.executor.run_job(
            "mcp_trainer.trainers.finetune.infer:generate",
            {
                "models_dir": str(self.models_dir),
                "model_id": model_id,
                "prompt": prompt,
                "max_new_tokens": max_new_tokens,
                "temperature": temperature,
                "top_p": top_p,
                "seed": seed,
            },
            timeout_s,
        )
        return Generation.model_validate(out)

    # -- change --------------------------------------------------------------------------------------

    async def cancel(self, task_id: str, *, wait_s: float = 10.0) -> TaskStatusView:
        """Cancel a task. A waiting one is cancelled at once and never starts; a running one is stopped
        (cooperatively, then SIGTERM, then SIGKILL to its process group) before this returns, or within
        `wait_s` when another process runs it. Raises InvalidStateError for a finished task."""
        store, scheduler = self._parts()
        check_task_id(task_id)

        def request(r: TaskRecord) -> TaskStatus:
            if r.status.is_terminal():
                raise InvalidStateError(
                    f"Task {r.task_id} is already {r.status.value}; "
                    "only queued or running tasks can be cancelled.",
                    "Nothing was changed." + (" Its model stays available." if r.result else ""),
                )
            before = r.status
            r.cancel_requested = True
            if r.status.is_waiting():
                r.transition(TaskStatus.CANCELLED, "cancelled before it started")
            return before

        _, before = store.update(task_id, request)
        if before is TaskStatus.RUNNING:
            if task_id in scheduler.running_ids():
                await scheduler.stop_task(task_id)
            else:
                scheduler.wake()
                with anyio.move_on_after(wait_s):
                    while not store.get(task_id).status.is_terminal():
                        await anyio.sleep(0.05)
        return self.status(task_id)

    async def wait(
        self, task_id: str, timeout_s: float, on_progress: ProgressCallback | None = None
    ) -> TaskStatusView:
        """Return when the task has ended or after `timeout_s`, whichever is first, with its status.

        `on_progress` is awaited whenever the progress changes. Cancelling the wait leaves the task running.
        """
        if timeout_s < 0:
            raise InvalidInputError("timeout_s must not be negative.")
        view = self.status(task_id)
        last: tuple[Any, ...] | None = None
        with anyio.move_on_after(timeout_s):
            while not view.status.is_terminal():
                key = (view.status, view.progress, view.phase, view.trial)
                if on_progress is not None and key != last:
                    last = key
                    await on_progress(view)
                await anyio.sleep(0.1)
                view = self.status(task_id)
        return self.status(task_id)

    async def drain(self, timeout_s: float = 300.0) -> None:
        """Wait until no task is waiting or running (for scripts and tests); raises TimeoutError."""
        store, _ = self._parts()
        with anyio.fail_after(timeout_s):
            while any(not r.status.is_terminal() for r in store.all()):
                await anyio.sleep(0.05)


def _parse_spec(spec: Mapping[str, Any] | TabularSpec | FinetuneSpec) -> TabularSpec | FinetuneSpec:
    if isinstance(spec, TabularSpec | FinetuneSpec):
        return spec
    task_type = spec.get("task_type")
    if task_type not in TASK_TYPES:
        raise InvalidInputError(f"Unknown task_type {task_type!r}.", f"Use one of: {', '.join(TASK_TYPES)}.")
    model = FinetuneSpec if task_type in FINETUNE_TASK_TYPES else TabularSpec
    try:
        return model.model_validate(dict(spec))
    except ValidationError as exc:
        detail = describe_validation_error(exc)
        raise InvalidInputError(f"Invalid parameters: {detail.rstrip('.')}.") from None


def _checked(spec: TabularSpec | FinetuneSpec) -> TabularSpec | FinetuneSpec:
    """The spec with absolute paths, once its data passed the checks (blocking: run in a thread)."""
    if isinstance(spec, FinetuneSpec):
        return check_finetune(spec)
    if parse_source(spec.data_source).path is not None:
        spec = spec.model_copy(update={"data_source": str(Path(spec.data_source).expanduser().resolve())})
    check_dataset(spec)
    return spec


def _parse_status(status: TaskStatus | str | None) -> TaskStatus | None:
    if status is None:
        return None
    try:
        return TaskStatus(status)
    except ValueError:
        raise InvalidInputError(
            f"status {status!r} is not a task status.",
            f"Use one of: {', '.join(s.value for s in TaskStatus)}.",
        ) from None


def _encode_cursor(r: TaskRecord) -> str:
    return base64.urlsafe_b64encode(f"{r.created_ns}:{r.task_id}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        ns, task_id = raw.split(":", 1)
        return int(ns), check_task_id(task_id)
    except (ValueError, binascii.Error, UnicodeDecodeError, InvalidInputError):
        raise InvalidInputError(
            "cursor is not one this server issued.",
            "Pass next_cursor from the previous page unchanged, or omit it.",
        ) from None
