"""What every part of the Python API shares: the directories, and the queue parts once started."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mcp_trainer.engine.executor import Executor
from mcp_trainer.engine.scheduler import Scheduler
from mcp_trainer.engine.store import TaskStore
from mcp_trainer.service.roots import Roots

__all__ = ["DEFAULT_CONCURRENCY", "Parts", "ServiceCore"]

DEFAULT_CONCURRENCY = 3


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
    _parts_or_none: Parts | None

    def _parts(self) -> Parts:
        if self._parts_or_none is None:
            raise RuntimeError("use `async with TrainingService(...)` before calling it")
        return self._parts_or_none
