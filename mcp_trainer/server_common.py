"""What the MCP tool modules share: the service of a request, tool errors, the answer to a submission."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import cast

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from mcp_trainer.errors import TrainerError
from mcp_trainer.service import TrainingService
from mcp_trainer.views import TaskStatusView

__all__ = ["SubmitResult", "service_of", "submitted", "tool_errors"]


class SubmitResult(BaseModel):
    task_id: str
    status: str
    queue_position: int | None = Field(description="1 = next to start")
    message: str


@contextlib.contextmanager
def tool_errors() -> Iterator[None]:
    """Errors the caller can fix become tool errors (isError) with their actionable message."""
    try:
        yield
    except TrainerError as exc:
        raise ToolError(str(exc)) from None


def service_of(ctx: Context) -> TrainingService:
    """The TrainingService the server's lifespan started."""
    return cast(TrainingService, ctx.request_context.lifespan_context)


def submitted(view: TaskStatusView) -> SubmitResult:
    """The answer to a submission: the task id, where it waits, and what to call next."""
    return SubmitResult(
        task_id=view.task_id,
        status=view.status.value,
        queue_position=view.queue_position,
        message=f"Queued. Poll get_task_status('{view.task_id}') or call wait_for_task.",
    )
