"""A cleanup task: the intermediate files of ended tasks removed (fine-tune checkpoints, work folders,
datasets written for later stages), and with `delete_models` the models of the tasks it names.

It works on the queue itself, which trainers may not import, so it lives here and is registered by name in
trainers/registry.py: it runs in a worker like every task (the worker's entry point is engine/worker.py),
and reads and changes task records through the store, under the queue's record lock, beside the servers
sharing the queue. Folders are removed as maintenance removes them (pruning.py): renamed aside under the
lock once the task's record, read again there, says it has ended.

The tasks it names were checked at submit (service/workflow.py); they are checked again here, since one
may have been retried meanwhile: a task named that waits or runs again fails the cleanup as `conflict`
before anything is removed, and so does a dataset that a waiting or running task reads.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from mcp_trainer.artifacts.model_dir import delete_model_dir, model_dir
from mcp_trainer.engine.diskuse import tree_usage
from mcp_trainer.engine.layout import CHECKPOINTS_DIR, QueueLayout
from mcp_trainer.engine.pruning import TaskFolders, remove_if_due
from mcp_trainer.engine.store import TaskStore
from mcp_trainer.errors import InvalidInputError, TaskNotFoundError
from mcp_trainer.records import ErrorKind, TaskRecord, TaskResult
from mcp_trainer.specs.cleanup import CleanupSpec
from mcp_trainer.trainers.base import TaskFailure, Trainer, WorkerContext

__all__ = ["MAX_LISTED_PATHS", "CleanupTrainer", "datasets_in_use"]

MAX_LISTED_PATHS = 500  # the outputs list at most this many paths (a task record stays small)
_DAY_S = 86400.0
_READ_FIELDS = ("data_source", "eval_data_source")  # the spec fields that name a file a task reads


def datasets_in_use(store: TaskStore, task_ids: Iterable[str]) -> dict[str, str]:
    """Of `task_ids`, those whose datasets (`datasets/<task_id>/`) a waiting or running task reads: task id
    to the reader's id. Blocking."""
    folders = {task_id: store.layout.dataset_path(task_id) for task_id in task_ids}
    readers: dict[str, str] = {}
    for record in store.live_now():
        for name in _READ_FIELDS:
            path = getattr(record.spec, name, None)
            if not isinstance(path, str):
                continue
            for task_id, folder in folders.items():
                if Path(path).is_relative_to(folder):
                    readers.setdefault(task_id, record.task_id)
    return readers


@dataclass
class _Removal:
    dry_run: bool
    removed: list[str] = field(default_factory=list)
    freed: int = 0
    kept: list[str] = field(default_factory=list)  # tasks that were running again when their turn came

    def add(self, path: Path, size: int) -> None:
        self.removed.append(str(path))
        self.freed += size


class CleanupTrainer(Trainer):
    def run(self, ctx: WorkerContext) -> TaskResult:
        spec = ctx.record.spec
        assert isinstance(spec, CleanupSpec) and ctx.queue_dir is not None
        store = TaskStore(QueueLayout.at(ctx.queue_dir))
        try:
            return _clean(ctx, spec, store)
        finally:
            store.close()


def _clean(ctx: WorkerContext, spec: CleanupSpec, store: TaskStore) -> TaskResult:
    ctx.report(phase="checking", percent=2.0, force=True)
    named = _named(ctx, spec, store)
    targets = list(named)
    if spec.older_than_days is not None:
        store.refresh()
        cutoff = time.time() - spec.older_than_days * _DAY_S
        aged = [
            s.task_id
            for s in store.summaries()
            if s.status.is_terminal() and s.ended_at < cutoff and s.task_id != ctx.record.task_id
        ]
        targets += [t for t in aged if t not in named]
    read = datasets_in_use(store, targets) if "datasets" in spec.remove else {}
    run = _Removal(spec.dry_run)
    parts = _parts(store.layout, spec)
    ctx.report(phase="removing", percent=5.0, force=True)
    for i, task_id in enumerate(targets):
        ctx.check_stop()
        ctx.report(percent=5.0 + 90.0 * i / len(targets), message=f"task {i + 1} of {len(targets)}")
        for folders, part in parts:
            if folders.base == store.layout.datasets_dir and task_id in read:
                ctx.warn(f"datasets of {task_id} kept: task {read[task_id]}, waiting or running, reads them")
                continue
            _remove(store, run, folders, task_id, part)
        if spec.delete_models and task_id in named:
            _remove_model(ctx, store, run, named[task_id])
    for task_id in run.kept:
        ctx.warn(f"task {task_id} was waiting or running again when its turn came: its files were kept")
    ctx.report(phase="done", percent=100.0, message=None, force=True)
    return TaskResult(
        outputs={
            "removed": run.removed[:MAX_LISTED_PATHS],
            "n_removed": len(run.removed),
            "freed_bytes": run.freed,
            "dry_run": spec.dry_run,
        }
    )


def _named(ctx: WorkerContext, spec: CleanupSpec, store: TaskStore) -> dict[str, TaskRecord]:
    """The records of the tasks named; TaskFailure (conflict) when any waits or runs again, or when a
    waiting or running task reads the datasets of one."""
    found: dict[str, TaskRecord] = {}
    for task_id in spec.task_ids or []:
        try:
            found[task_id], _ = store.find(task_id)
        except TaskNotFoundError:
            ctx.warn(f"task {task_id} no longer exists (its file was removed): nothing of it to clean up")
    live = [t for t, r in found.items() if not r.status.is_terminal()]
    if live:
        raise TaskFailure(
            ErrorKind.CONFLICT,
            f"Task(s) {', '.join(live)} are waiting or running again (retried since this cleanup was "
            "submitted): nothing was removed.",
            "Submit the cleanup again once they have ended, or cancel them first.",
        )
    read = datasets_in_use(store, found) if "datasets" in spec.remove else {}
    if read:
        pairs = ", ".join(f"{t} (read by {reader})" for t, reader in read.items())
        raise TaskFailure(
            ErrorKind.CONFLICT,
            f"Waiting or running tasks read the datasets of {pairs}: nothing was removed.",
            "Submit the cleanup once they have ended, or leave 'datasets' out of remove.",
        )
    return found


def _parts(layout: QueueLayout, spec: CleanupSpec) -> list[tuple[TaskFolders, str | None]]:
    """What of each task goes: its whole work folder (checkpoints included), or its checkpoints only; its
    datasets."""
    parts: list[tuple[TaskFolders, str | None]] = []
    if "work" in spec.remove:
        parts.append((TaskFolders.work(layout), None))
    elif "checkpoints" in spec.remove:
        parts.append((TaskFolders.work(layout), CHECKPOINTS_DIR))
    if "datasets" in spec.remove:
        parts.append((TaskFolders.datasets(layout), None))
    return parts


def _remove(store: TaskStore, run: _Removal, folders: TaskFolders, task_id: str, part: str | None) -> None:
    def ended(current: TaskRecord | None) -> bool:
        if current is None or current.status.is_terminal():
            return True
        if task_id not in run.kept:
            run.kept.append(task_id)
        return False

    size = remove_if_due(store, folders, task_id, part, ended, dry_run=run.dry_run)
    if size is not None:
        target = folders.base / task_id
        run.add(target if part is None else target / part, size)


def _remove_model(ctx: WorkerContext, store: TaskStore, run: _Removal, record: TaskRecord) -> None:
    """Delete the model a named task made, as delete_model does, and say so in its record."""
    model_id = record.result.model_id if record.result is not None else None
    if model_id is None or record.result is None or record.result.deleted_at is not None:
        return
    path = model_dir(ctx.models_dir, model_id)
    size = tree_usage(path)[1]
    if not path.is_dir():
        return
    if run.dry_run:
        run.add(path, size)
        return
    try:
        delete_model_dir(ctx.models_dir, model_id)
    except InvalidInputError:  # deleted meanwhile
        return
    run.add(path, size)

    def mark(r: TaskRecord) -> None:
        if r.result is not None and r.result.model_id == model_id and r.result.deleted_at is None:
            r.result.deleted_at = time.time()

    store.update_anywhere(record.task_id, mark)
