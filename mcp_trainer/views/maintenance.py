"""What queue maintenance returns: what it removed and archived (or would, on a dry run), the disk use of
the queue and the models, and the failed tasks worth retrying."""

from __future__ import annotations

from pydantic import BaseModel, Field

from mcp_trainer.records import ErrorKind

__all__ = ["DiskReport", "DiskUse", "Freed", "MaintenanceReport", "ModelSize", "ModelsUse", "RetryCandidate"]

MAX_LISTED = 50  # task ids named per action; `count` counts them all


class Freed(BaseModel):
    """One action: how many items and bytes it removed (on a dry run: would remove), and which tasks."""

    count: int = 0
    bytes: int = 0
    task_ids: list[str] = Field(default_factory=list, description=f"the first {MAX_LISTED}")

    def add(self, task_id: str | None, size: int) -> None:
        self.count += 1
        self.bytes += size
        if task_id is not None and len(self.task_ids) < MAX_LISTED:
            self.task_ids.append(task_id)


class DiskUse(BaseModel):
    """Files and bytes under one place, and the free space of the disk it is on."""

    path: str
    files: int
    bytes: int
    free_bytes: int | None = Field(description="free space on its disk (null: could not be read)")


class ModelSize(BaseModel):
    model_id: str
    bytes: int


class ModelsUse(DiskUse):
    """trained_models/: every file, the number of models, and the largest of them."""

    models: int
    largest: list[ModelSize] = Field(description="the 10 largest models, largest first")


class DiskReport(BaseModel):
    task_files: DiskUse = Field(description="queue/<task_id>.json")
    logs: DiskUse
    work: DiskUse = Field(description="searches' studies and fine-tunes' checkpoints")
    datasets: DiskUse = Field(description="what tasks wrote for later tasks (preprocess outputs)")
    archive: DiskUse
    corrupt: DiskUse
    models: ModelsUse


class RetryCandidate(BaseModel):
    """A failed task whose error may pass on another attempt (a worker lost, a full disk)."""

    task_id: str
    error_kind: ErrorKind
    finished_at: str | None
    attempts: int


class MaintenanceReport(BaseModel):
    """What one maintenance run did (or, with dry_run, would do), and the disk use after it."""

    dry_run: bool = Field(description="true: nothing was changed; the counts say what a run would do")
    archive_after_days: float
    prune_work_after_days: float
    checkpoints_pruned: Freed = Field(description="fine-tune checkpoints of ended tasks")
    work_pruned: Freed = Field(
        description="work folders (a search's study.journal) of tasks ended over prune_work_after_days ago"
    )
    orphans_pruned: Freed = Field(description="work folders of no task, or left half-removed")
    archived: Freed = Field(
        description="tasks ended over archive_after_days ago, moved to queue/archive/ (bytes: their task "
        "files, logs and work folders removed)"
    )
    datasets_pruned: Freed = Field(
        description="queue/datasets/<task_id>/ of tasks archived in this run, and of no task once untouched "
        "for prune_work_after_days (a live task keeps its datasets until a cleanup task removes them)"
    )
    archive_files: list[str] = Field(description="archive files written (or that would be)")
    disk: DiskReport = Field(description="after this run (a dry run: now)")
    retry_candidates: list[RetryCandidate] = Field(
        description=f"failed tasks another attempt may get past, newest first (at most {MAX_LISTED})"
    )
    retry_candidates_total: int
    problems: list[str] = Field(description="what could not be done or read, in words")
