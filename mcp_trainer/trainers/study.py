"""An Optuna study kept on disk with its task, so an interrupted search resumes with its trials.

The study lives in a journal file (`work/<task_id>/study.journal`), which optuna-dashboard opens. A full
disk or a kill mid-append can leave a torn last line, after which every load fails: the tail is cut back
to the last complete line before the study is opened. Only one worker of a task runs at a time (the
queue's owner guarantees it), so a lock file left by a killed worker is stale and removed.
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path
from typing import Literal

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock
from optuna.trial import TrialState

__all__ = ["JOURNAL_FILE", "attach_study", "open_study", "repair_journal"]

JOURNAL_FILE = "study.journal"
log = logging.getLogger(__name__)


def repair_journal(path: Path) -> int:
    """Cut a torn last line off the journal; returns the number of bytes removed."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return 0
    if size == 0:
        return 0
    with open(path, "rb+") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) == b"\n":
            return 0
        # Scan back for the last newline, a block at a time.
        end = size
        keep = 0
        while end > 0:
            start = max(0, end - 65536)
            f.seek(start)
            block = f.read(end - start)
            idx = block.rfind(b"\n")
            if idx >= 0:
                keep = start + idx + 1
                break
            end = start
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())
    log.warning("cut a torn tail of %d bytes off %s", size - keep, path)
    return size - keep


class FlockLock(JournalFileOpenLock):
    """The journal's lock as a kernel flock on `<journal>.flock`.

    Optuna's default symlink lock backs off exponentially up to a second when contended, which starves
    parallel trials, and a killed holder leaves it behind for its 30 s grace period. A flock wakes the
    next waiter at once and dies with its holder.
    """

    def __init__(self, journal: Path) -> None:
        super().__init__(str(journal))  # the public lock type the backend accepts; its locking is replaced
        self._path = journal.with_name(journal.name + ".flock")
        self._fd: int | None = None

    def acquire(self) -> bool:
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def _storage(journal: Path) -> JournalStorage:
    return JournalStorage(JournalFileBackend(str(journal), lock_obj=FlockLock(journal)))


def open_study(
    work_dir: Path,
    *,
    study_name: str,
    direction: Literal["minimize", "maximize"],
    seed: int,
    pruner: optuna.pruners.BasePruner | None = None,
) -> optuna.Study:
    """Create or resume the task's study; trials left running by a dead worker are marked failed."""
    work_dir.mkdir(parents=True, exist_ok=True)
    path = work_dir / JOURNAL_FILE
    repair_journal(path)
    for stale in (path.with_name(path.name + ".lock"),):
        if stale.is_symlink() or stale.exists():
            stale.unlink()
    storage = _storage(path)
    study = optuna.create_study(
        study_name=study_name,
        storage=storage,
        direction=direction,
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=pruner,
        load_if_exists=True,
    )
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        log.info("trial %d was running when its worker died; marked failed", trial.number)
    return study


def attach_study(work_dir: Path, *, study_name: str, seed: int) -> optuna.Study:
    """Open an existing study from another process while it is in use (no repair, no clean-up)."""
    storage = _storage(work_dir / JOURNAL_FILE)
    return optuna.load_study(
        study_name=study_name, storage=storage, sampler=optuna.samplers.TPESampler(seed=seed)
    )
