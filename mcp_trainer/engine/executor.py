"""The contract between the scheduler and whatever runs a task: local processes today, others later.

The scheduler hands a claimed task to an `Executor` and gets back a `RunHandle`: the run's messages
(progress, then one outcome), a way to stop it, and a description of how it ended. It never knows
which backend runs the task; the task files stay the source of truth.

Messages are `(kind, payload)` pairs: "started", "progress" (a `Progress` as JSON), and one of "result"
(a `TaskResult`), "error" (a `TaskError`) or "stopped" (it honoured a stop request). A run that ends
without an outcome was lost (killed, crashed); `RunHandle.exit_description` says how.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Iterable, Sequence
from typing import Any

from mcp_trainer.records import TaskRecord

__all__ = ["Executor", "RunHandle", "WorkerMessage"]

WorkerMessage = tuple[str, dict[str, Any]]


class RunHandle(ABC):
    """One running attempt of a task."""

    task_id: str
    pid: int | None  # the process (group leader) that runs it, where there is one
    started_at: float | None  # that process's start time, to tell a reused pid apart

    @abstractmethod
    def exit_description(self) -> str:
        """How the run ended, for an error message: 'exited with code 1', 'was killed by signal 9'."""


class Executor(ABC):
    """Starts runs of tasks, streams their messages, stops them, and runs short jobs."""

    def warm_up(self, task_types: Iterable[str] = ()) -> None:  # noqa: B027 (optional: nothing to warm)
        """Prepare to start runs quickly, of the usual task types and of `task_types` (blocking; called in
        a thread; cheap for what is warm already)."""

    def is_warm_for(self, task_type: str) -> bool:
        """Whether runs of `task_type` start quickly now (False: `warm_up` would prepare something)."""
        return True

    @abstractmethod
    async def start(self, record: TaskRecord, *, cpu_share: int, gpus: Sequence[int] = ()) -> RunHandle:
        """Start an attempt of `record`'s task, which sizes its thread pools and processes to `cpu_share`
        cores and sees only the GPUs `gpus` (indexes on this machine; none: no GPU); returns once it is
        running."""

    @abstractmethod
    def messages(self, handle: RunHandle) -> AsyncGenerator[WorkerMessage, None]:
        """The run's messages until it ends; when the iterator finishes, nothing of the run is left."""

    @abstractmethod
    async def stop(self, handle: RunHandle) -> None:
        """Stop the run: a cooperative request, then force. Returns once it is gone."""

    @abstractmethod
    async def finish(self, handle: RunHandle) -> None:
        """Ask the run to end its work now and finish with the best result so far (it goes on to save)."""

    @abstractmethod
    async def wait_gone(self, handle: RunHandle, timeout_s: float) -> None:
        """Wait up to `timeout_s` for the run to end (after `stop`)."""

    @abstractmethod
    async def run_job(self, target: str, kwargs: dict[str, Any], timeout_s: float) -> Any:
        """Run `module:function(**kwargs)` apart from this process (a prediction, a generation) and
        return its result. Raises TrainerError with the job's message when it refuses its input,
        TimeoutError past `timeout_s`."""
