"""The queue directory's layout: every path inside it is named here and nowhere else.

    <task_id>.json          one task record each, replaced atomically on every change (store.py)
    .records.lock           flock'd around every read-modify-write, by every process sharing the queue
    .owner.lock             flock'd by the one process that executes tasks (owner.py)
    .index/tasks.jsonl      a cache of every task file's summary, so that a start-up parses few files
                            (summary.py); never trusted over the task files, rebuilt when unusable. In
                            a folder of its own so that writing it leaves the queue directory's mtime
    .model-signing-key      the key that signs saved models (artifacts/signing.py), mode 0600
    .http-token             the HTTP transport's bearer token, mode 0600 (server/http.py)
    audit.jsonl             one JSON line per call that changed something, appended only (service/audit.py)
    corrupt/                files that did not parse or validate, each with a `.reason.txt`
    logs/<task_id>.log      what the task's worker logged, all attempts
    work/<task_id>/         a task's working state (its Optuna study, a fine-tune's checkpoints), kept for
                            resumption; what goes inside belongs to the task's trainer
    work/.pruning-<...>     a work folder (or its checkpoints) being removed by maintenance (maintenance.py)
    datasets/<task_id>/     what a task wrote for later tasks to read (a preprocess task's data files, an
                            evaluation's comparison table): the server's own data, readable whatever the
                            data roots; kept until a cleanup task removes it or the task is archived
    datasets/.tmp-<task_id>-<pid>/   such a folder being written (renamed into place when complete)
    archive/<YYYY-MM>.jsonl records of tasks that ended long ago, one JSON line each, by the month they
                            ended (archive.py)

Paths are built from checked task ids only (ids.py), never from a caller's text. Whoever can write the
queue directory can already change any task, but cannot make this code write or read through a link it
planted there: files are opened without following links (files.py `open_no_follow`), and logs/, work/,
corrupt/, archive/ and work/<task_id>/ are replaced by real directories when a link stands in their place.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from mcp_trainer.files import TMP_DIR_PREFIX, real_dir
from mcp_trainer.ids import check_pipeline_id, check_task_id

__all__ = [
    "ARCHIVE_SUFFIX",
    "CHECKPOINTS_DIR",
    "OUTPUT_TMP_PREFIX",
    "PRUNING_PREFIX",
    "TASK_SUFFIX",
    "QueueLayout",
]

TASK_SUFFIX = ".json"
ARCHIVE_SUFFIX = ".jsonl"
PRUNING_PREFIX = ".pruning-"
OUTPUT_TMP_PREFIX = TMP_DIR_PREFIX  # datasets/.tmp-<task_id>-<pid>: outputs being written (files.replace_dir)
# A fine-tune's checkpoints under its work folder (trainers/finetune/train.py names it too; a test holds
# the two equal: the server never imports that module, which imports torch).
CHECKPOINTS_DIR = "checkpoints"


@dataclass(frozen=True)
class QueueLayout:
    """Where each file of the queue rooted at `root` lives."""

    root: Path

    @classmethod
    def at(cls, root: str | Path) -> QueueLayout:
        return cls(Path(root).expanduser().resolve())

    @property
    def records_lock(self) -> Path:
        return self.root / ".records.lock"

    @property
    def index_dir(self) -> Path:
        return self.root / ".index"

    @property
    def index_file(self) -> Path:
        return self.index_dir / "tasks.jsonl"

    @property
    def owner_lock(self) -> Path:
        return self.root / ".owner.lock"

    @property
    def signing_key(self) -> Path:
        return self.root / ".model-signing-key"

    @property
    def audit_log(self) -> Path:
        return self.root / "audit.jsonl"

    @property
    def corrupt_dir(self) -> Path:
        return self.root / "corrupt"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def work_dir(self) -> Path:
        return self.root / "work"

    @property
    def datasets_dir(self) -> Path:
        return self.root / "datasets"

    @property
    def archive_dir(self) -> Path:
        return self.root / "archive"

    def archive_file(self, month: str) -> Path:
        """`archive/<YYYY-MM>.jsonl`; `month` comes from a timestamp (archive.py), never a caller."""
        if not re.fullmatch(r"\d{4}-\d{2}", month):
            raise ValueError(f"not a month: {month[:20]!r}")
        return self.archive_dir / f"{month}{ARCHIVE_SUFFIX}"

    @property
    def pipelines_dir(self) -> Path:
        return self.root / "pipelines"

    def pipeline_file(self, pipeline_id: str) -> Path:
        return self.pipelines_dir / f"{check_pipeline_id(pipeline_id)}.json"

    def task_file(self, task_id: str) -> Path:
        return self.root / f"{check_task_id(task_id)}{TASK_SUFFIX}"

    def log_file(self, task_id: str) -> Path:
        return self.logs_dir / f"{check_task_id(task_id)}.log"

    def work_path(self, task_id: str) -> Path:
        return self.work_dir / check_task_id(task_id)

    def dataset_path(self, task_id: str) -> Path:
        """`datasets/<task_id>/`: the files the task wrote for later tasks."""
        return self.datasets_dir / check_task_id(task_id)

    def pruning_path(self, task_id: str, part: str, within: Path | None = None) -> Path:
        """Where maintenance moves `work/<task_id>/<part>` (or the whole folder, part "all") before removing
        it: `.pruning-<task_id>.<part>.<pid>.<ns>`, so that a sweep can tell a dead remover's. `within`:
        the folder it goes to (default work/; datasets/ for a task's datasets)."""
        name = f"{PRUNING_PREFIX}{check_task_id(task_id)}.{part}.{os.getpid()}.{time.time_ns()}"
        return (within or self.work_dir) / name

    def create(self) -> None:
        """Make the directories a queue needs (the root, logs/ and work/); a symbolic link planted in
        place of logs/ or work/ is replaced by a directory."""
        self.root.mkdir(parents=True, exist_ok=True)
        for d in (self.logs_dir, self.work_dir):
            real_dir(d)
