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
  `prune_work_after_s`, and at once when the task is archived; folders a remover left half-removed.

A work folder, or its checkpoints, is first renamed aside (`work/.pruning-...`) under the queue's record
lock, after the task's record is read again there, then removed outside the lock: a task that another
process changes meanwhile keeps its files, and the lock is held for a rename, not for a large tree. No
link is followed: folders are opened with O_NOFOLLOW relative to their parent, and a link planted in a
folder's place is removed as a link. Blocking: run it in a worker thread.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mcp_trainer.engine.archive import ended_at, month_of
from mcp_trainer.engine.diskuse import disk_report, tree_usage
from mcp_trainer.engine.layout import ARCHIVE_SUFFIX, CHECKPOINTS_DIR, PRUNING_PREFIX, QueueLayout
from mcp_trainer.engine.processes import pid_alive
from mcp_trainer.engine.store import TaskStore
from mcp_trainer.engine.summary import TaskSummary
from mcp_trainer.errors import TaskNotFoundError
from mcp_trainer.ids import is_task_id
from mcp_trainer.records import ErrorKind, TaskRecord, TaskStatus
from mcp_trainer.views.maintenance import MAX_LISTED, Freed, MaintenanceReport, RetryCandidate
from mcp_trainer.views.tasks import iso

__all__ = ["Policy", "is_retry_candidate", "run_maintenance"]

log = logging.getLogger(__name__)
DAY_S = 86400.0
_RETRY_KINDS = frozenset({ErrorKind.DISK_FULL, ErrorKind.WORKER_LOST})
Due = Callable[[TaskRecord | None], bool]  # given the record read again under the lock (None: no task)


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


class _Work:
    """Parts of work/, measured, renamed aside and removed without following links."""

    def __init__(self, layout: QueueLayout) -> None:
        self.layout = layout

    def _open(self, name: str, dir_fd: int | None = None) -> int | None:
        try:
            path = name if dir_fd is not None else self.layout.work_dir
            return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return None
            raise

    def path(self, task_id: str, part: str | None) -> Path | None:
        """`work/<task_id>[/<part>]` when it is a directory reached through directories only."""
        folder = self.layout.work_path(task_id)
        target = folder if part is None else folder / part
        for p in (self.layout.work_dir, folder, target):
            try:
                if not stat.S_ISDIR(os.lstat(p).st_mode):
                    return None
            except FileNotFoundError:
                return None
        return target

    def size(self, task_id: str, part: str | None) -> int | None:
        target = self.path(task_id, part)
        return None if target is None else tree_usage(target)[1]

    def set_aside(self, task_id: str, part: str | None) -> Path | None:
        """Rename `work/<task_id>` (or its `part`) to a `.pruning-` name in work/; None when absent."""
        trash = self.layout.pruning_path(task_id, part or "all")
        root = self._open("")
        if root is None:
            return None
        try:
            if part is None:
                os.rename(task_id, trash.name, src_dir_fd=root, dst_dir_fd=root)
                return trash
            folder = self._open(task_id, root)
            if folder is None:
                return None
            try:
                if not stat.S_ISDIR(os.stat(part, dir_fd=folder, follow_symlinks=False).st_mode):
                    return None
                os.rename(part, trash.name, src_dir_fd=folder, dst_dir_fd=root)
                return trash
            finally:
                os.close(folder)
        except FileNotFoundError:
            return None
        finally:
            os.close(root)

    @staticmethod
    def discard(trash: Path) -> int:
        """Remove what `set_aside` renamed (a link as a link); returns its bytes."""
        size = tree_usage(trash)[1]
        try:
            if stat.S_ISDIR(os.lstat(trash).st_mode):
                shutil.rmtree(trash)  # fd-based on Linux: links inside are removed, never followed
            else:
                trash.unlink()
        except FileNotFoundError:
            pass
        return size


@dataclass
class _Run:
    store: TaskStore
    policy: Policy
    dry_run: bool
    now: float
    work: _Work
    checkpoints: Freed = field(default_factory=Freed)
    studies: Freed = field(default_factory=Freed)
    orphans: Freed = field(default_factory=Freed)
    archived: Freed = field(default_factory=Freed)
    problems: list[str] = field(default_factory=list)

    def remove(self, task_id: str, part: str | None, due: Due, freed: Freed) -> None:
        """Remove `work/<task_id>[/<part>]` if `due` still holds for the task's record read under the lock
        (a dry run only measures it)."""
        if self.dry_run:
            size = self.work.size(task_id, part)
            if size is not None:
                freed.add(task_id, size)
            return
        with self.store.locked():
            try:
                current: TaskRecord | None = self.store.get(task_id)
            except TaskNotFoundError:
                current = None
            trash = self.work.set_aside(task_id, part) if due(current) else None
        if trash is not None:
            freed.add(task_id, self.work.discard(trash))


def run_maintenance(
    store: TaskStore, models_dir: Path, policy: Policy, *, dry_run: bool = False, now: float | None = None
) -> MaintenanceReport:
    """One maintenance run over `store`'s queue (see the module's docstring); with `dry_run`, nothing is
    changed and the report says what a run would do."""
    run = _Run(store, policy, dry_run, time.time() if now is None else now, _Work(store.layout))
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
    """Remove what a remover that died left renamed aside, and dead writers' temporary archive files."""
    layout = run.store.layout
    with contextlib.suppress(FileNotFoundError, NotADirectoryError), os.scandir(layout.work_dir) as entries:
        leftovers = [Path(e.path) for e in entries if e.name.startswith(PRUNING_PREFIX)]
    for trash in leftovers:
        pid = trash.name.split(".")[-2]
        if pid.isdigit() and not pid_alive(int(pid)):
            run.orphans.add(None, _Work.discard(trash))
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
        else:
            trash = run.work.set_aside(r.task_id, None)
            size += 0 if trash is None else run.work.discard(trash)
        run.archived.add(r.task_id, size)
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
    """Work folders of no task: at once when the task is archived, else once untouched for the policy's
    age; a link in a work folder's place at once (it is removed, not followed)."""
    cutoff = run.now - run.policy.prune_work_after_s
    live = run.store.ids()
    run.store.archive.refresh()
    with (
        contextlib.suppress(FileNotFoundError, NotADirectoryError),
        os.scandir(run.store.layout.work_dir) as it,
    ):
        entries = [
            (e.name, e.stat(follow_symlinks=False)) for e in it if is_task_id(e.name) and e.name not in live
        ]
    for task_id, st in entries:
        if stat.S_ISLNK(st.st_mode):
            done = "would be removed" if run.dry_run else "removed"
            run.problems.append(f"work/{task_id} is a symbolic link, not a folder: {done}, never followed")
            if not run.dry_run:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(run.store.layout.work_path(task_id))
            run.orphans.add(task_id, st.st_size)
            continue
        archived = run.store.archive.entry(task_id) is not None
        if archived or st.st_mtime < cutoff:
            run.remove(task_id, None, lambda c: c is None, run.orphans)
