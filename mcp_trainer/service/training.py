"""`TrainingService`: the Python API, and the core the MCP server is a thin face over::

    async with TrainingService("queue", "trained_models") as svc:
        task = await svc.submit({"task_type": "svm_classification", "data_source": "/data/iris.csv",
                                 "target_column": "species"})
        done = await svc.wait(task.task_id, timeout_s=600)

Every method is a coroutine and never blocks the event loop on the disk or on training.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Self

import anyio

from mcp_trainer.artifacts.signing import ModelSigner
from mcp_trainer.engine.alerts import AlertRules
from mcp_trainer.engine.layout import QueueLayout
from mcp_trainer.engine.local import ProcessExecutor
from mcp_trainer.engine.scheduler import Scheduler
from mcp_trainer.engine.starts import AdmissionConfig
from mcp_trainer.engine.store import TaskStore
from mcp_trainer.errors import InvalidInputError, TrainerError
from mcp_trainer.offload import off_loop
from mcp_trainer.secretfile import SecretFileError
from mcp_trainer.service.audit import AuditLog
from mcp_trainer.service.caps import DEFAULT_MAX_QUEUED, QueueCaps
from mcp_trainer.service.core import DEFAULT_CONCURRENCY, Parts
from mcp_trainer.service.maintenance import (
    DEFAULT_ARCHIVE_AFTER_DAYS,
    DEFAULT_MAINTENANCE_INTERVAL_S,
    DEFAULT_PRUNE_WORK_AFTER_DAYS,
    MaintenanceMethods,
    maintenance_policy,
)
from mcp_trainer.service.models import ModelMethods
from mcp_trainer.service.monitoring import MonitoringMethods
from mcp_trainer.service.roots import Roots
from mcp_trainer.service.watching import WatchMethods

__all__ = ["DEFAULT_CONCURRENCY", "DEFAULT_MAX_QUEUED", "TrainingService"]


class TrainingService(WatchMethods, ModelMethods, MonitoringMethods, MaintenanceMethods):
    """A training queue in `queue_dir` whose models go to `models_dir`.

    With `execute=True` this process competes to own the queue and, while it does, runs tasks in worker
    processes, at most `max_concurrent` at once, each when the machine has the cores, memory and GPUs it
    asks for (`admission`: thresholds on the machine's use, the head of the queue's reservation, a cap of
    running tasks per user), and queue maintenance (`maintain`) every `maintenance_interval_s` (None or
    0: never on its own). The owner raises alerts on its running tasks (`alert_rules`: when a task counts
    as stalled, and the other limits). Any number of services may share one queue directory; all of them
    can submit, read, cancel and run maintenance. With `data_roots` (and `model_roots`), every data file
    (and fine-tune model directory) a caller names must resolve under one of them (or under
    `queue_dir/datasets/`, where preprocess tasks write their files). Script tasks (the caller's own
    scripts) are refused unless `script_dirs` names the directories they may come from, and run only where
    the service that executes the queue names them too. A submit is refused
    (InvalidStateError, nothing written) when `max_queued` tasks wait already, or `max_queued_per_user`
    tasks of its `user_id` (None: no cap). Every call that changes something (submit, cancel, stop,
    retry, delete_model, maintain) appends a line to `queue_dir/audit.jsonl` (service/audit.py).

    Raises InvalidInputError for an option out of its range.
    """

    def __init__(
        self,
        queue_dir: str | os.PathLike[str] = "queue",
        models_dir: str | os.PathLike[str] = "trained_models",
        *,
        max_concurrent: int = DEFAULT_CONCURRENCY,
        max_queued: int | None = DEFAULT_MAX_QUEUED,
        max_queued_per_user: int | None = None,
        execute: bool = True,
        poll_interval_s: float = 0.5,
        warm_up: bool = True,
        data_roots: tuple[str | os.PathLike[str], ...] = (),
        model_roots: tuple[str | os.PathLike[str], ...] = (),
        script_dirs: tuple[str | os.PathLike[str], ...] = (),
        admission: AdmissionConfig | None = None,
        alert_rules: AlertRules | None = None,
        maintenance_interval_s: float | None = DEFAULT_MAINTENANCE_INTERVAL_S,
        archive_after_days: float = DEFAULT_ARCHIVE_AFTER_DAYS,
        prune_work_after_days: float = DEFAULT_PRUNE_WORK_AFTER_DAYS,
    ) -> None:
        if max_concurrent < 1:
            raise InvalidInputError("max_concurrent must be at least 1.")
        self.maintenance_interval_s, self.policy = maintenance_policy(
            maintenance_interval_s, archive_after_days, prune_work_after_days
        )
        self._maintenance_lock = anyio.Lock()
        self.queue_dir = Path(queue_dir).expanduser().resolve()
        self.models_dir = Path(models_dir).expanduser().resolve()
        self.max_concurrent = max_concurrent
        self.queue_caps = QueueCaps(max_queued, max_queued_per_user)
        self._audit = AuditLog(QueueLayout(self.queue_dir).audit_log)
        self.execute = execute
        self.poll_interval_s = poll_interval_s
        self._warm_up = warm_up
        self.roots = Roots.of(
            tuple(Path(p) for p in data_roots),
            tuple(Path(p) for p in model_roots),
            tuple(Path(p) for p in script_dirs),
            own=(QueueLayout(self.queue_dir).datasets_dir,),
        )
        self.admission = admission or AdmissionConfig()
        self.alert_rules = alert_rules or AlertRules()
        self._parts_or_none: Parts | None = None
        self._pipelines_seen_ended = {}
        self._exit: contextlib.AsyncExitStack | None = None

    async def __aenter__(self) -> Self:
        layout = QueueLayout.at(self.queue_dir)
        await off_loop(lambda: self.models_dir.mkdir(parents=True, exist_ok=True))
        store = await off_loop(TaskStore, layout)
        try:
            await off_loop(ModelSigner(layout.signing_key).ensure)
        except SecretFileError as exc:
            store.close()
            raise TrainerError(
                str(exc),
                "Models are signed with this key: fix the file, or remove it to start a new key "
                "(models signed with the old one can then no longer be loaded).",
            ) from None
        await off_loop(store.refresh)
        executor = ProcessExecutor(layout, self.models_dir, script_dirs=self.roots.scripts)
        scheduler = Scheduler(
            store,
            executor,
            self.models_dir,
            limit=self.max_concurrent,
            poll_interval_s=self.poll_interval_s,
            admission=self.admission,
            alert_rules=self.alert_rules,
        )
        self._parts_or_none = Parts(store, scheduler, executor)
        self._exit = contextlib.AsyncExitStack()
        if self.execute:
            tg = await self._exit.enter_async_context(anyio.create_task_group())
            self._exit.callback(tg.cancel_scope.cancel)
            tg.start_soon(scheduler.run, self._warm_up)
            tg.start_soon(self._advance_pipelines_periodically, min(max(self.poll_interval_s, 0.05), 1.0))
            if self.maintenance_interval_s is not None:
                tg.start_soon(self._maintain_periodically, self.maintenance_interval_s)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        parts = self._parts()
        assert self._exit is not None
        with anyio.CancelScope(shield=True):
            await parts.scheduler.shutdown()
        await self._exit.__aexit__(exc_type, exc, tb)
        parts.store.close()
        self._parts_or_none = None

    async def shutdown_workers(self) -> None:
        """Stop every task this process runs and hand it back to the queue (it resumes at the next start)."""
        await self._parts().scheduler.shutdown()

    async def warm_up(self, task_types: Iterable[str] = ()) -> None:
        """Start the workers' forkserver (and its imports of the training stack) now, not on the first task;
        with fine-tune `task_types`, also the forkserver that imports torch and transformers."""
        await off_loop(self._parts().executor.warm_up, list(task_types))

    @property
    def is_owner(self) -> bool:
        """Whether this process executes the queue's tasks now."""
        return self._parts_or_none is not None and self._parts_or_none.scheduler.is_owner

    @property
    def peak_running(self) -> int:
        """The most tasks this process has run at once since it started."""
        return self._parts().scheduler.peak_running
