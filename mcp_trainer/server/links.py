"""Resource links in tool results: a result about a task, a model, a pipeline or the queue also names the
trainer:// resources a client may read or watch (resources.py), as `resource_link` content blocks after
the JSON text. The structured content stays the same.
"""

from __future__ import annotations

from collections.abc import Iterable

import mcp_types as types
from pydantic import BaseModel

from mcp_trainer.artifacts.model_dir import REPORT_PLOTS
from mcp_trainer.server.resources import LOG_LINES, QUEUE_URI
from mcp_trainer.views.models import ModelInfo
from mcp_trainer.views.pipelines import PipelineStatusView
from mcp_trainer.views.tasks import QueueStatus, TaskStatusView

__all__ = ["links_for", "model_links", "task_links"]

_JSON = "application/json"


def _link(uri: str, name: str, title: str, mime_type: str) -> types.ResourceLink:
    return types.ResourceLink(uri=uri, name=name, title=title, mime_type=mime_type)


def _pipeline_link(pipeline_id: str) -> types.ResourceLink:
    return _link(f"trainer://pipelines/{pipeline_id}", pipeline_id, "Pipeline status", _JSON)


def task_links(task_id: str) -> list[types.ResourceLink]:
    """A task's status and its log."""
    return [
        _link(f"trainer://tasks/{task_id}", task_id, "Task status (subscribe for updates)", _JSON),
        _link(
            f"trainer://tasks/{task_id}/logs",
            f"{task_id} log",
            f"Task log, last {LOG_LINES} lines",
            "text/plain",
        ),
    ]


def model_links(model_id: str, plots: Iterable[str] = ()) -> list[types.ResourceLink]:
    """A model's metadata and each of the report plots named."""
    found = [_link(f"trainer://models/{model_id}", model_id, "Model metadata", _JSON)]
    for plot in plots:
        found.append(
            _link(f"trainer://models/{model_id}/plots/{plot}", f"{plot}.png", f"Plot: {plot}", "image/png")
        )
    return found


def links_for(result: BaseModel) -> list[types.ResourceLink]:
    """The links a tool's result carries: none for results about no one thing (a page of tasks, say)."""
    if isinstance(result, TaskStatusView):
        found = task_links(result.task_id)
        if result.model_id and not result.model_deleted:
            found += model_links(result.model_id)
        if result.pipeline_id:
            found.append(_pipeline_link(result.pipeline_id))
        return found
    if isinstance(result, ModelInfo):
        drawn = [name for name in REPORT_PLOTS if f"{name}.png" in result.reports]  # in report order
        return model_links(result.model_id, drawn)
    if isinstance(result, PipelineStatusView):
        return [_pipeline_link(result.pipeline_id)]
    if isinstance(result, QueueStatus):
        return [_link(QUEUE_URI, "queue", "The queue (subscribe for updates)", _JSON)]
    task_id = getattr(result, "task_id", None)
    if isinstance(task_id, str):  # a submission's answer, a task's log
        return task_links(task_id)
    return []
