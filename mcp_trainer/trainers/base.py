"""The contract between a worker and a trainer."""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcp_trainer.artifacts.signing import ModelSigner
from mcp_trainer.ids import model_id_for
from mcp_trainer.records import ErrorKind, Progress, TaskError, TaskRecord, TaskResult, with_warning

__all__ = ["StopRequested", "TaskFailure", "Trainer", "WorkerContext"]


class StopRequested(Exception):
    """Raised inside a trainer when its task was asked to stop."""


class TaskFailure(Exception):
    """A task failed for a reason the caller can act on, classified by `kind` (data_error, timeout,
    divergence, out_of_memory, ...). Retrying the same task as it is will not help."""

    def __init__(self, kind: ErrorKind, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.hint = hint

    def as_error(self) -> TaskError:
        return TaskError(kind=self.kind, message=self.message, hint=self.hint)


@dataclass
class WorkerContext:
    """What a trainer gets: its task, where to write, how to report progress and warnings, and how to
    notice a stop (cancel: give up) or a finish request (stop_training_task: keep the best so far)."""

    record: TaskRecord
    models_dir: Path
    work_dir: Path
    send: Callable[[tuple[str, dict[str, Any]]], None]
    stop_event: threading.Event
    signer: ModelSigner  # signs the saved model (artifacts/signing.py)
    # Set by stop_training_task: end the work now and finish with the best found so far.
    finish_event: threading.Event = field(default_factory=threading.Event)
    # The CPUs this task may fill by default (processes, thread pools); None: all of the machine's.
    cpu_share: int | None = None
    gpus: tuple[int, ...] = ()  # the GPUs it was granted (indexes on this machine; CUDA_VISIBLE_DEVICES)
    # Where the server that runs the queue lets scripts come from (--allow-scripts-from); none: nowhere.
    script_dirs: tuple[Path, ...] = ()
    # Where the task writes files for later tasks to read (`queue/datasets/<task_id>/`, written whole by
    # trainers/outputs.py), and the queue's directory, which tasks that work on the queue itself need
    # (a cleanup). None outside a worker (tests).
    output_dir: Path | None = None
    queue_dir: Path | None = None
    min_interval_s: float = 0.25
    progress: Progress = field(default_factory=lambda: Progress(phase="starting"))
    # Work left for after the result is sent (the report plots): the task completes without waiting.
    after_result: list[Callable[[], None]] = field(default_factory=list)
    _last_sent: float = 0.0

    @property
    def model_id(self) -> str:
        return model_id_for(self.record.task_id)

    def should_stop(self) -> bool:
        return self.stop_event.is_set()

    def should_finish(self) -> bool:
        """Whether the task was asked to end its work now and keep the best result so far."""
        return self.finish_event.is_set()

    def warn(self, message: str) -> None:
        """Something the caller should know went wrong or was left out (a helper died, a limit ended a
        trial): shown in the task's status and kept with the model. Sent at once."""
        if message not in self.progress.warnings:
            logging.getLogger("mcp_trainer.worker").warning("%s", message)  # the log keeps every one
            self.report(warnings=with_warning(self.progress.warnings, message), force=True)

    def later(self, work: Callable[[], None]) -> None:
        """Do `work` after the result is sent: the task is completed (its model usable) meanwhile, and the
        worker process stays until it is done. `work` must never raise; a crash in it costs only what
        it makes (the saved model stays)."""
        self.after_result.append(work)

    def run_after_result(self) -> None:
        """Run the work left for after the result, in order (the worker calls it)."""
        while self.after_result:
            self.after_result.pop(0)()

    def check_stop(self) -> None:
        """Raise StopRequested if the task was asked to stop; call it between units of work."""
        if self.stop_event.is_set():
            raise StopRequested

    def report(self, *, force: bool = False, **fields: Any) -> None:
        """Update progress fields (see `Progress`); sends at most every `min_interval_s` unless forced."""
        if "percent" in fields:  # parallel searches can finish a few trials more than n_trials
            fields["percent"] = min(max(float(fields["percent"]), 0.0), 100.0)
        phase_changed = "phase" in fields and fields["phase"] != self.progress.phase
        self.progress = self.progress.model_copy(update=fields)
        now = time.monotonic()
        if force or phase_changed or now - self._last_sent >= self.min_interval_s:
            self._last_sent = now
            self.progress.updated_at = time.time()
            self.send(("progress", self.progress.model_dump(mode="json")))


class Trainer(ABC):
    """Runs one task to completion inside a worker process.

    `run` reports progress through `ctx.report`, calls `ctx.check_stop()` between units of work (trials,
    epochs), writes its model under `ctx.models_dir / ctx.model_id`, and returns the result; what need
    not delay the task's completion (drawing report plots) it leaves to `ctx.later`. It raises
    `TaskFailure` (with its kind: data_error, timeout, divergence, ...) for a failure the caller can act
    on and `StopRequested` when asked to stop; anything else is treated as a failure of the trainer
    (internal). A trainer that can resume keeps its state under `ctx.work_dir`.
    """

    @abstractmethod
    def run(self, ctx: WorkerContext) -> TaskResult: ...
