"""What every part of the Python API shares: the directories, and the queue parts once started."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from mcp_trainer.engine.alerts import AlertRules
from mcp_trainer.engine.executor import Executor
from mcp_trainer.engine.scheduler import Scheduler
from mcp_trainer.engine.starts import AdmissionConfig
from mcp_trainer.engine.store import TaskStore
from mcp_trainer.errors import TrainerError
from mcp_trainer.offload import off_loop
from mcp_trainer.records import TaskRecord
from mcp_trainer.service.audit import AuditLog
from mcp_trainer.service.caps import QueueCaps
from mcp_trainer.service.roots import Roots

__all__ = ["DEFAULT_CONCURRENCY", "Parts", "ServiceCore"]

DEFAULT_CONCURRENCY = 3
T = TypeVar("T")


@dataclass(frozen=True)
class Parts:
    """The queue's machinery, which exists while the service is entered (`async with`)."""

    store: TaskStore
    scheduler: Scheduler
    executor: Executor


class ServiceCore:
    """State shared by the task and model halves of the API."""

    queue_dir: Path
    models_dir: Path
    max_concurrent: int
    roots: Roots
    admission: AdmissionConfig
    alert_rules: AlertRules
    queue_caps: QueueCaps
    _audit: AuditLog  # every call that changes something goes through `_audit.record`
    _parts_or_none: Parts | None

    @property
    def _signing_key(self) -> Path:
        """The key that signs and checks saved models (artifacts/signing.py)."""
        return self._parts().store.layout.signing_key

    async def _change(self, task_id: str, change: Callable[[TaskRecord], T]) -> T:
        """Apply `change` to a task's record, archived or not (store.update_anywhere, in a thread); a write
        the disk refuses (full, read-only) is a TrainerError that says so, and nothing changed."""
        store = self._parts().store
        try:
            _, result = await off_loop(lambda: store.update_anywhere(task_id, change))
        except OSError as exc:
            raise TrainerError(
                f"The task file of {task_id} could not be written in {store.root}: {exc.strerror or exc}.",
                "Free disk space or fix the queue directory's permissions, then try again.",
            ) from None
        return result

    def _parts(self) -> Parts:
        if self._parts_or_none is None:
            raise RuntimeError("use `async with TrainingService(...)` before calling it")
        return self._parts_or_none
