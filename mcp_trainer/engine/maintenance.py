"""Queue maintenance: prune the work files of ended tasks, archive tasks that ended long ago, measure disk
use, and list the failed tasks worth retrying.

What is removed, and when (`Policy`):
- a fine-tune's checkpoints (`work/<task_id>/checkpoints/`) as soon as its task has ended, unless the task
  failed in a way a retry may get past (a worker lost, a full disk): a retry resumes from them;
- the whole work folder (a search's `study.journal`, which optuna-dashboard opens) once the task ended
  more than `prune_work_after_s` ago;
- task records of tasks that ended more than `archive_after_s` ago move to the archive (archive.py), and
  their task file, log and work folder are removed;
- work folders of no task (its record set aside as corrupt, or removed by hand) once untouched for
  `prune_work_after_s`, and at once when the task is archived; folders a remover left half-removed;
- a task's datasets (`datasets/<task_id>/`: what a preprocess task wrote for later stages) when the task
  is archived, and those of no task once untouched for `prune_work_after_s`; folders left half-written
  there by a writer that died. A live task keeps its datasets until a cleanup task removes them.

Folders are removed as pruning.py says (renamed aside under the record lock after the task's record is
read again, no link followed). Blocking: run it in a worker thread.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mcp_trainer.engine.archive import ended_at, month_of
from mcp_trainer.engine.diskuse import disk_report
from mcp_trainer.engine.layout import ARCHIVE_SUFFIX, CHECKPOINTS_DIR, OUTPUT_TMP_PREFIX, PRUNING_PREFIX
from mcp_trainer.engine.processes import pid_alive
from mcp_trainer.engine.pruning import Due, TaskFolders, remove_if_due
from mcp_trainer.engine.store import TaskStore
from mcp_trainer.engine.summary import TaskSummary
from mcp_trainer.ids import is_task_id
from mcp_trainer.records import ErrorKind, TaskRecord, TaskStatus
from mcp_trainer.views.maintenance import MAX_LISTED, Freed, MaintenanceReport, RetryCandidate
from mcp_trainer.views.tasks import iso

__all__ = ["Policy", "is_retry_candidate", "run_maintenance"]

log = logging.getLogger(__name__)
DAY_S = 86400.0
_RETRY_KINDS = frozenset({ErrorKind.DISK_FULL, ErrorKind.WORKER_LOST})


@dataclass(frozen=True)
class Policy:
    """How long ended tasks keep their files."""

    archive_after_s: float = 30 * DAY_S
    prune_work_after_s: float = 7 * DAY_S


def is_retry_candidate(r: TaskRecord | TaskSummary) -> bool:
    """A failed task whose error another attempt may get past."""
    if r.status is not TaskStatus.FAILED:
        return False
    kind = r.error_kind if isinstance(r, TaskSummary) else r.error.kind if r.error else None
    return kind is not None and (kind.is_retryable() or kind in _RETRY_KINDS)


@dataclass
class _Run:
    store: TaskStore
    policy: Policy
    dry_run: bool
    now: float
    work: TaskFolders
    datasets: TaskFolders
    checkpoints: Freed = field(default_factory=Freed)
    studies: Freed = field(default_factory=Freed)
    orphans: Freed = field(default_factory=Freed)
    archived: Freed = field(default_factory=Freed)
    datasets_pruned: Freed = field(default_factory=Freed)
    problems: list[str] = field(default_factory=list)

    def remove(
        self, task_id: str, part: str | None, due: Due, freed: Freed, folders: TaskFolders | None = None
    ) -> None:
        """Remove `work/<task_id>[/<part>]` (or the task's folder in `folders`) if `due` still holds for
        the task's record read under the lock (a dry run only measures it)."""
        size = remove_if_due(self.store, folders or self.work, task_id, part, due, dry_run=self.dry_run)
        if size is not None:
            freed.add(task_id, size)


def run_maintenance(
    store: TaskStore, models_dir: Path, policy: Policy, *, dry_run: bool = False, now: float | None = None
) -> MaintenanceReport:
    """One maintenance run over `store`'s queue (see the module's docstring); with `dry_run`, nothing is
    changed and the report says what a run would do."""
    layout = store.layout
    run = _Run(
        store,
        policy,
        dry_run,
        time.time() if now is None else now,
        TaskFolders.work(layout),
        TaskFolders.datasets(layout),
    )
    if not dry_run:
        _sweep(run)
    archived = _archive(run)
    _prune_ended(run, {r.task_id for r in archived})
    _prune_orphans(run)
    store.archive.refresh()
    if not dry_run:
        for stray in store.archive.strays():
            store.quarantine(stray, f"{stray.name} in archive/ is not a plain file written by maintenance")
            run.problems.append(f"archive/{stray.name} was not a plain file: moved to corrupt/")
        store.archive.refresh()
    candidates = sorted(
        (s for s in store.summaries() if is_retry_candidate(s)), key=lambda s: s.ended_at, reverse=True
    )
    return MaintenanceReport(
        dry_run=dry_run,
        archive_after_days=policy.archive_after_s / DAY_S,
        prune_work_after_days=policy.prune_work_after_s / DAY_S,
        checkpoints_pruned=run.checkpoints,
        work_pruned=run.studies,
        orphans_pruned=run.orphans,
        archived=run.archived,
        datasets_pruned=run.datasets_pruned,
        archive_files=sorted({f"{month_of(r)}{ARCHIVE_SUFFIX}" for r in archived}),
        disk=disk_report(store.layout, models_dir),
        retry_candidates=[
            RetryCandidate(
                task_id=s.task_id,
                error_kind=s.error_kind or ErrorKind.INTERNAL,
                finished_at=iso(s.finished_at),
                attempts=s.attempts,
            )
            for s in candidates[:MAX_LISTED]
        ],
        retry_candidates_total=len(candidates),
        problems=run.problems + store.archive.problems(),
    )


def _sweep(run: _Run) -> None:
    """Remove what a remover that died left renamed aside, the folders of outputs a writer that died left
    half-written, and dead writers' temporary archive files."""
    layout = run.store.layout
    for base in (layout.work_dir, layout.datasets_dir):
        names: list[str] = []
        with contextlib.suppress(FileNotFoundError, NotADirectoryError), os.scandir(base) as entries:
            names = [e.name for e in entries]
        for name in names:
            if name.startswith(PRUNING_PREFIX):
                pid = name.split(".")[-2]
            elif name.startswith(OUTPUT_TMP_PREFIX) and base == layout.datasets_dir:
                pid = name.rpartition("-")[2]
            else:
                continue
            if pid.isdigit() and not pid_alive(int(pid)):
                run.orphans.add(None, TaskFolders.discard(base / name))
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISDIR(os.lstat(layout.archive_dir).st_mode):
            run.store.sweep_temp_files(layout.archive_dir)


def _archive(run: _Run) -> list[TaskRecord]:
    """Archive the tasks that ended more than the policy's age ago; remove their logs and work folders."""
    records = run.store.archive_ended(run.now - run.policy.archive_after_s, dry_run=run.dry_run)
    for r in records:
        size = len(r.model_dump_json().encode("utf-8"))  # the task file holds exactly this
        log_file = run.store.layout.log_file(r.task_id)
        with contextlib.suppress(FileNotFoundError):
            size += os.lstat(log_file).st_size
            if not run.dry_run:
                log_file.unlink()
        if run.dry_run:
            size += run.work.size(r.task_id, None) or 0
            data = run.datasets.size(r.task_id, None)
        else:
            trash = run.work.set_aside(r.task_id, None)
            size += 0 if trash is None else run.work.discard(trash)
            trash = run.datasets.set_aside(r.task_id, None)
            data = None if trash is None else run.datasets.discard(trash)
        run.archived.add(r.task_id, size)
        if data is not None:
            run.datasets_pruned.add(r.task_id, data)
    if records and not run.dry_run:
        log.info(
            "archived %d task(s) that ended over %.4g days ago",
            len(records),
            run.policy.archive_after_s / DAY_S,
        )
    return records


def _prune_ended(run: _Run, archived: set[str]) -> None:
    """Checkpoints of ended tasks at once; whole work folders past the policy's age."""
    cutoff = run.now - run.policy.prune_work_after_s

    def old_enough(c: TaskRecord | None) -> bool:
        return c is not None and c.status.is_terminal() and ended_at(c) < cutoff

    def no_retry(c: TaskRecord | None) -> bool:
        return c is not None and c.status.is_terminal() and not is_retry_candidate(c)

    for s in run.store.summaries():
        if s.task_id in archived or not s.status.is_terminal():
            continue
        if s.ended_at < cutoff:
            run.remove(s.task_id, None, old_enough, run.studies)
        elif not is_retry_candidate(s) and run.work.path(s.task_id, CHECKPOINTS_DIR) is not None:
            run.remove(s.task_id, CHECKPOINTS_DIR, no_retry, run.checkpoints)


def _prune_orphans(run: _Run) -> None:
    """Work folders and datasets of no task: at once when the task is archived, else once untouched for
    the policy's age; a link in such a folder's place at once (it is removed, not followed)."""
    live = run.store.ids()
    run.store.archive.refresh()
    _prune_orphans_in(run, run.work, "work", run.orphans, live)
    _prune_orphans_in(run, run.datasets, "datasets", run.datasets_pruned, live)


def _prune_orphans_in(
    run: _Run, folders: TaskFolders, label: str, freed: Freed, live: Mapping[str, TaskSummary]
) -> None:
    cutoff = run.now - run.policy.prune_work_after_s
    entries: list[tuple[str, os.stat_result]] = []
    with contextlib.suppress(FileNotFoundError, NotADirectoryError), os.scandir(folders.base) as it:
        entries = [
            (e.name, e.stat(follow_symlinks=False)) for e in it if is_task_id(e.name) and e.name not in live
        ]
    for task_id, st in entries:
        if stat.S_ISLNK(st.st_mode):
            done = "would be removed" if run.dry_run else "removed"
            run.problems.append(f"{label}/{task_id} is a symbolic link, not a folder: {done}, never followed")
            if not run.dry_run:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(folders.base / task_id)
            freed.add(task_id, st.st_size)
            continue
        archived = run.store.archive.entry(task_id) is not None
        if archived or st.st_mtime < cutoff:
            run.remove(task_id, None, lambda c: c is None, freed, folders)
