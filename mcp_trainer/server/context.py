"""What the tool modules share: the typed request context, tool errors, the answer to a submission."""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator
from typing import Any

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from mcp_trainer.errors import TrainerError
from mcp_trainer.service.training import TrainingService
from mcp_trainer.specs.options import SubmitOptions
from mcp_trainer.views.tasks import TaskStatusView

__all__ = ["CONTEXT", "Ctx", "SubmitResult", "service_of", "submit_with", "submitted", "tool_errors"]

# A tool's context: the lifespan's state is the TrainingService the server started (app.py).
Ctx = Context[TrainingService, Any]
# The context parameter of a tool whose other parameters are generated (schema.with_parameters).
CONTEXT = inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=Ctx)


class SubmitResult(BaseModel):
    task_id: str
    status: str
    queue_position: int | None = Field(description="1 = next to start when a slot frees; null: starting now")
    already_submitted: bool = Field(False, description="an earlier call with this idempotency_key made it")
    message: str


@contextlib.contextmanager
def tool_errors() -> Iterator[None]:
    """Errors the caller can fix become tool errors (isError) with their actionable message."""
    try:
        yield
    except TrainerError as exc:
        raise ToolError(str(exc)) from None


def service_of(ctx: Ctx) -> TrainingService:
    """The TrainingService the server's lifespan started."""
    return ctx.request_context.lifespan_context


def submitted(view: TaskStatusView, created: bool = True) -> SubmitResult:
    """The answer to a submission: the task id, where it waits, and what to call next."""
    where = (
        "a slot is free: it starts once the machine has the cores and memory it asks for "
        "(get_task_status says what it waits for, if anything)"
        if view.queue_position is None
        else f"{view.queue_position - 1} task(s) start before it"
    )
    then = f"Poll get_task_status('{view.task_id}') or call wait_for_task."
    message = f"Queued; {where}. {then}"
    if not created:
        status = view.status.value
        message = f"Already submitted with this idempotency_key (nothing new queued); it is {status}. {then}"
    return SubmitResult(
        task_id=view.task_id,
        status=view.status.value,
        queue_position=view.queue_position,
        already_submitted=not created,
        message=message,
    )


async def submit_with(ctx: Ctx, arguments: dict[str, Any]) -> SubmitResult:
    """Queue a task from a submit tool's validated arguments: its spec's fields and the queue options."""
    spec = {k: v for k, v in arguments.items() if k not in SubmitOptions.model_fields}
    options = {k: v for k, v in arguments.items() if k in SubmitOptions.model_fields}
    with tool_errors():
        view, created = await service_of(ctx).submit_once(spec, SubmitOptions.model_validate(options))
        return submitted(view, created)
