"""Pipeline files: `queue/pipelines/<pipeline_id>.json`, one per pipeline, written atomically under the
queue's record lock (so that any process may cancel or retry while the owner advances it), readable by
hand. They are few and small, and read afresh each time: no cache to keep honest."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import TypeVar

from pydantic import ValidationError

from mcp_trainer.engine.store import TaskStore
from mcp_trainer.errors import TaskNotFoundError
from mcp_trainer.files import atomic_write_bytes, read_capped, real_dir
from mcp_trainer.ids import check_pipeline_id
from mcp_trainer.pipeline_records import PipelineRecord

__all__ = ["PipelineStore"]

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_PIPELINE_BYTES = 1 << 20


class PipelineStore:
    """The pipelines of the queue `tasks` keeps; its lock guards both."""

    def __init__(self, tasks: TaskStore) -> None:
        self.tasks = tasks
        self.layout = tasks.layout

    def create(self, record: PipelineRecord) -> None:
        with self.tasks.locked():
            real_dir(self.layout.pipelines_dir)  # made with the first pipeline
            self._write(record)

    def get(self, pipeline_id: str) -> PipelineRecord:
        """The pipeline's record; TaskNotFoundError when there is none (or its file is unreadable)."""
        path = self.layout.pipeline_file(check_pipeline_id(pipeline_id))
        try:
            return PipelineRecord.model_validate_json(read_capped(path, MAX_PIPELINE_BYTES))
        except FileNotFoundError:
            raise TaskNotFoundError(
                f"No pipeline {pipeline_id} in this queue.", "list_pipelines shows the pipelines there are."
            ) from None
        except (OSError, ValidationError) as exc:
            log.warning("pipeline file %s is unreadable: %s", path, exc)
            raise TaskNotFoundError(
                f"The file of pipeline {pipeline_id} cannot be read ({path}).",
                "Restore it from a backup, or remove it; its stages' tasks are not affected.",
            ) from None

    def update(self, pipeline_id: str, change: Callable[[PipelineRecord], T]) -> tuple[PipelineRecord, T]:
        """Apply `change` to the current record under the lock and write it back; what `change` raises
        leaves the file as it was."""
        with self.tasks.locked():
            record = self.get(pipeline_id)
            result = change(record)
            self._write(record)
            return record, result

    def ids(self) -> list[str]:
        """Every pipeline's id, newest first."""
        return sorted(self.mtimes(), reverse=True)

    def mtimes(self) -> dict[str, int]:
        """Each pipeline file's mtime (ns): a file changed since it was last seen needs another look."""
        found: dict[str, int] = {}
        if not self.layout.pipelines_dir.is_dir():
            return found
        with os.scandir(self.layout.pipelines_dir) as entries:
            for entry in entries:
                if entry.name.endswith(".json") and not entry.name.startswith("."):
                    found[entry.name.removesuffix(".json")] = entry.stat().st_mtime_ns
        return found

    def _write(self, record: PipelineRecord) -> None:
        data = record.model_dump_json(indent=2).encode()
        atomic_write_bytes(self.layout.pipeline_file(record.pipeline_id), data)
