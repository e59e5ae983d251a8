"""The MCP tasks extension (`io.modelcontextprotocol/tasks`, SEP-2663), backed by the queue.

A client on the 2026-07-28 protocol that declares the extension in a request's capabilities gets, from a
tool that queues work (`TASK_TOOLS`), a task handle (`resultType: "task"`) in place of the tool's usual
answer. The tool runs as usual first: the work is queued (its task file written) before the handle is
returned, so a `tasks/get` for it resolves at once, as the spec requires. A refusal (bad input, a full
queue) is the usual error result and makes no task.

The handle's id is the queue's own id (task_handles.py): `tasks/get` reads the task file or the pipeline
file each time and `tasks/cancel` cancels the queued work, so nothing lives only in this process and a
handle survives a restart of the server. Any task or pipeline id of the queue is a handle, including
those submitted without the extension (a task from list_training_tasks can be polled with `tasks/get`).
Who may read or cancel is who may reach the server at all (the HTTP token): every caller sees every task
through list_training_tasks already, so the ids are not secrets.

Clients that do not declare the extension, and every client on the 2025-11-25 handshake (where the spec
says the extension does not apply), see the tools and results they always saw; the methods answer them
`-32021` (missing capability) or, on the old protocol, `-32601` (method not found).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, cast

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.extension import Extension, MethodBinding
from mcp.server.mcpserver.server import require_client_extension
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS, CallToolRequestParams, CallToolResult, RequestParams
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from mcp_trainer.errors import InvalidInputError, InvalidStateError, TaskNotFoundError, TrainerError
from mcp_trainer.server.actor import actor_of_request
from mcp_trainer.server.task_handles import pipeline_handle, task_handle
from mcp_trainer.service.audit import acting_as
from mcp_trainer.service.training import TrainingService

__all__ = ["TASKS_EXTENSION", "TASK_TOOLS", "TasksExtension"]

TASKS_EXTENSION = "io.modelcontextprotocol/tasks"

# The tools answered with a task, and the field of their usual result that names the queued work. Each
# one queues work that outlives the call; predict and generate do not (they answer within the call, and
# nothing of them is in the queue to poll after a restart), and wait_for_task's purpose is what polling
# tasks/get does.
TASK_TOOLS: dict[str, str] = {
    "submit_training_task": "task_id",
    "submit_finetune_task": "task_id",
    "submit_script_task": "task_id",
    "submit_preprocess_task": "task_id",
    "submit_evaluation_task": "task_id",
    "submit_cleanup_task": "task_id",
    "retry_task": "task_id",
    "stop_training_task": "task_id",
    "submit_pipeline": "pipeline_id",
    "retry_pipeline": "pipeline_id",
}

_VERSIONS = frozenset(MODERN_PROTOCOL_VERSIONS)  # the extension is not defined on the handshake protocol
_PIPELINE_PREFIX = "pipeline_"


class TaskRequestParams(RequestParams):
    """`tasks/get` and `tasks/cancel`: `{taskId}`. The id is checked by the handler, so that a missing
    or malformed one is refused with a sentence rather than the SDK's bare "Invalid request parameters"."""

    task_id: object = None


class UpdateTaskRequestParams(TaskRequestParams):
    """`tasks/update`: `{taskId, inputResponses}`."""

    input_responses: object = None


Handler = Callable[[ServerRequestContext[Any, Any], Any], Awaitable[HandlerResult]]


class TasksExtension(Extension):
    """Tool calls as tasks of the queue, for clients that speak the extension (see the module's doc)."""

    identifier = TASKS_EXTENSION

    def methods(self) -> Sequence[MethodBinding]:
        bind: list[tuple[str, type[RequestParams], Handler]] = [
            ("tasks/get", TaskRequestParams, self._get),
            ("tasks/update", UpdateTaskRequestParams, self._update),
            ("tasks/cancel", TaskRequestParams, self._cancel),
        ]
        return [MethodBinding(m, params, handler, _VERSIONS) for m, params, handler in bind]

    async def intercept_tool_call(
        self, params: CallToolRequestParams, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        result = await call_next(ctx)
        field = TASK_TOOLS.get(params.name)
        if field is None or not isinstance(result, CallToolResult) or result.is_error:
            return result
        if not _speaks_tasks(ctx):
            return result
        handle_id = (result.structured_content or {}).get(field)
        if not isinstance(handle_id, str):
            return result
        try:
            return {"resultType": "task", **await _handle(_service(ctx), handle_id)}
        except TrainerError:  # it cannot be read back (moved aside meanwhile): the usual answer, then
            return result

    async def _get(self, ctx: ServerRequestContext[Any, Any], params: TaskRequestParams) -> HandlerResult:
        require_client_extension(ctx, TASKS_EXTENSION)
        handle_id = _task_id(params, "retrieve")
        with _invalid_params("retrieve", handle_id):
            return await _handle(_service(ctx), handle_id)

    async def _update(
        self, ctx: ServerRequestContext[Any, Any], params: UpdateTaskRequestParams
    ) -> HandlerResult:
        # No task of this server ever asks for input, so every response is to a key never issued: the
        # spec says to ignore those and acknowledge. An unknown task is still an error.
        require_client_extension(ctx, TASKS_EXTENSION)
        handle_id = _task_id(params, "update")
        if not isinstance(params.input_responses, dict):
            raise MCPError(
                code=INVALID_PARAMS,
                message="Failed to update task: params.inputResponses must be an object of responses keyed "
                "by the inputRequests keys of tasks/get (this server's tasks never ask for input).",
            )
        with _invalid_params("update", handle_id):
            await _handle(_service(ctx), handle_id)
        return {}

    async def _cancel(self, ctx: ServerRequestContext[Any, Any], params: TaskRequestParams) -> HandlerResult:
        require_client_extension(ctx, TASKS_EXTENSION)
        handle_id = _task_id(params, "cancel")
        service = _service(ctx)
        with _invalid_params("cancel", handle_id), acting_as(actor_of_request(ctx, "tasks/cancel")):
            if handle_id.startswith(_PIPELINE_PREFIX):
                await service.cancel_pipeline(handle_id)
            else:
                await service.cancel(handle_id)  # a running task's processes are ended before this returns
        return {}


def _speaks_tasks(ctx: ServerRequestContext[Any, Any]) -> bool:
    """Whether this request declared the extension, on a protocol revision where it is defined."""
    if ctx.protocol_version not in _VERSIONS:
        return False
    capabilities = ctx.session.client_capabilities
    return capabilities is not None and TASKS_EXTENSION in (capabilities.extensions or {})


def _service(ctx: ServerRequestContext[Any, Any]) -> TrainingService:
    return cast(TrainingService, ctx.lifespan_context)


async def _handle(service: TrainingService, handle_id: str) -> dict[str, Any]:
    """The task object for a queue task or pipeline id, read from the queue now."""
    if handle_id.startswith(_PIPELINE_PREFIX):
        return pipeline_handle(await service.pipeline_status(handle_id))
    record = await service.record(handle_id)
    return task_handle(record, await service.status(handle_id))


def _task_id(params: TaskRequestParams, action: str) -> str:
    if not isinstance(params.task_id, str) or not params.task_id:
        raise MCPError(
            code=INVALID_PARAMS,
            message=f"Failed to {action} task: params.taskId must be the taskId a tools/call answered with "
            "(or a task or pipeline id of this queue).",
        )
    return params.task_id


@contextlib.contextmanager
def _invalid_params(action: str, handle_id: str) -> Iterator[None]:
    """A refusal of the service as the spec's `-32602` error: what failed, why, and what to do."""
    try:
        yield
    except TaskNotFoundError as exc:
        raise _refusal(action, "task not found", exc, handle_id) from None
    except InvalidStateError as exc:
        raise _refusal(action, "the task has ended", exc, handle_id) from None
    except InvalidInputError as exc:
        raise _refusal(action, "not a task id", exc, handle_id) from None


def _refusal(action: str, what: str, exc: TrainerError, handle_id: str) -> MCPError:
    message = f"Failed to {action} task: {what}. {exc}"
    return MCPError(code=INVALID_PARAMS, message=message, data={"taskId": handle_id})
