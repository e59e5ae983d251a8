"""What watchers and completers read: a digest of each thing a client may watch, and ids by prefix.

A watcher (the MCP server's subscriptions) polls the digests of the things its clients watch a few times a
second and tells them when one differs from the last, so a digest costs memory reads and at most a stat
or one small file: a task's comes from the store's records and the live progress this process holds, a
log's is its size and modification time, the queue's leaves out the machine's load (an NVML call per
sample). A digest leaves out what moves on its own (a running task's elapsed seconds, the seconds since
the owner's last beat, the machine's history): otherwise everything would change all the time.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from typing import Any

from mcp_trainer.artifacts.model_dir import METADATA_FILE, model_dir
from mcp_trainer.ids import check_task_id, is_model_id
from mcp_trainer.offload import off_loop
from mcp_trainer.service.models import ModelMethods
from mcp_trainer.service.pipelines import PipelineMethods

__all__ = ["WatchMethods"]

# Fields of a status that change with the clock alone.
_QUEUE_MOVING = frozenset({"owner_silent_s", "history"})
_TASK_MOVING = frozenset({"elapsed_s"})


class WatchMethods(PipelineMethods, ModelMethods):
    """Digests of the queue, a task, its log, a model and a pipeline; task, model and pipeline ids."""

    async def queue_digest(self) -> dict[str, Any]:
        """The queue's status less the machine's load and what moves with the clock: it differs from an
        earlier one when tasks come, start, end or move up, claims or the owner change, or alerts do."""
        facts = await off_loop(self._queue_facts)
        return {k: v for k, v in facts.items() if k not in _QUEUE_MOVING}

    async def task_digest(self, task_id: str) -> dict[str, Any]:
        """A task's status less its elapsed seconds; raises as `status` does."""
        return (await self.status(task_id)).model_dump(exclude=set(_TASK_MOVING))

    async def log_stamp(self, task_id: str) -> tuple[int, int] | None:
        """The size and modification time (ns) of a task's log, None while it has none: whether the log
        changed, without reading it."""
        path = self._parts().store.layout.log_file(check_task_id(task_id))

        def stamp() -> tuple[int, int] | None:
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                return None
            return (st.st_size, st.st_mtime_ns)

        return await off_loop(stamp)

    async def model_digest(self, model_id: str) -> dict[str, Any]:
        """A model's metadata as `model_info` gives it (one small file and its reports' names); raises as
        `model_info` does."""
        return (await self.model_info(model_id)).model_dump()

    async def pipeline_digest(self, pipeline_id: str) -> dict[str, Any]:
        """A pipeline's status; raises as `pipeline_status` does."""
        return (await self.pipeline_status(pipeline_id)).model_dump()

    async def task_ids(self, prefix: str = "", limit: int = 20) -> list[str]:
        """Ids of this queue's tasks (not the archived ones) that start with `prefix`, newest first, at
        most `limit`."""

        def ids() -> list[str]:
            store = self._parts().store
            store.refresh()
            found: list[str] = []
            for summary in reversed(store.summaries()):
                if len(found) >= limit:
                    break
                if summary.task_id.startswith(prefix):
                    found.append(summary.task_id)
            return found

        return await off_loop(ids)

    async def model_ids(self, prefix: str = "", limit: int = 20) -> list[str]:
        """Ids of the saved models that start with `prefix`, newest first, at most `limit` (one listing of
        the models' directory; a directory still being saved is left out)."""

        def ids() -> list[str]:
            names: list[str] = []
            with contextlib.suppress(FileNotFoundError), os.scandir(self.models_dir) as entries:
                names = [e.name for e in entries if e.name.startswith(prefix) and is_model_id(e.name)]
            names.sort(reverse=True)  # ids begin with their UTC second of creation
            saved = (n for n in names if (model_dir(self.models_dir, n) / METADATA_FILE).is_file())
            return list(itertools.islice(saved, limit))

        return await off_loop(ids)

    async def pipeline_ids(self, prefix: str = "", limit: int = 20) -> list[str]:
        """Ids of this queue's pipelines that start with `prefix`, newest first, at most `limit`."""

        def ids() -> list[str]:
            try:
                every = self._pipelines().ids()
            except FileNotFoundError:  # no pipeline yet: its directory is made with the first
                return []
            return [i for i in every if i.startswith(prefix)][:limit]

        return await off_loop(ids)
