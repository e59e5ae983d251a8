"""A client of the MCP tasks extension (SEP-2663) for tests, on the SDK's own client.

The SDK 2.3 client has no runtime for the extension, but it lets a client declare one and claim a result
shape: `TasksClient` declares `io.modelcontextprotocol/tasks`, claims `resultType: "task"` on tools/call,
and resolves a task by polling `tasks/get` (honouring `pollIntervalMs`, capped for tests) until it ends,
as a client that hides tasks from its caller would. `get_task`, `cancel_task` and `update_task` send the
three methods by hand, as raw requests.
"""

from __future__ import annotations

from typing import Any, Literal

import anyio
from mcp import Client
from mcp.client.extension import ClaimContext, ClientExtension, ResultClaim
from mcp.client.session import ClientSession
from mcp.types import CallToolResult, Request, RequestParams, Result
from pydantic import ConfigDict

__all__ = ["TASKS", "CreateTaskResult", "TaskResult", "TasksClient", "cancel_task", "get_task", "update_task"]

TASKS = "io.modelcontextprotocol/tasks"
TERMINAL = ("completed", "failed", "cancelled")


class _Task(Result):
    model_config = ConfigDict(extra="allow")

    task_id: str
    status: str
    status_message: str | None = None
    created_at: str
    last_updated_at: str
    ttl_ms: int | None
    poll_interval_ms: int | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


class CreateTaskResult(_Task):
    result_type: Literal["task"]


class TaskResult(_Task):
    result_type: Literal["complete"] = "complete"


class _TaskParams(RequestParams):
    model_config = ConfigDict(extra="allow")

    task_id: Any = None


class _Get(Request[_TaskParams, Literal["tasks/get"]]):
    method: Literal["tasks/get"] = "tasks/get"
    name_param = "taskId"  # SEP-2663: Mcp-Name carries the task id over HTTP


class _Cancel(Request[_TaskParams, Literal["tasks/cancel"]]):
    method: Literal["tasks/cancel"] = "tasks/cancel"
    name_param = "taskId"


class _Update(Request[_TaskParams, Literal["tasks/update"]]):
    method: Literal["tasks/update"] = "tasks/update"
    name_param = "taskId"


class _Unnamed(Request[_TaskParams, str]):
    """Any of the three without a taskId to put in Mcp-Name (to test the server's refusal)."""


def _request(named: type[_Get | _Cancel | _Update], params: _TaskParams) -> Request[_TaskParams, Any]:
    if isinstance(params.task_id, str):
        return named(params=params)
    return _Unnamed(method=named.model_fields["method"].default, params=params)


class _Ack(Result):
    model_config = ConfigDict(extra="allow")


async def get_task(session: ClientSession, task_id: Any) -> TaskResult:
    return await session.send_request(_request(_Get, _TaskParams(task_id=task_id)), TaskResult)


async def cancel_task(session: ClientSession, task_id: Any) -> dict[str, Any]:
    ack = await session.send_request(_request(_Cancel, _TaskParams(task_id=task_id)), _Ack)
    return ack.model_dump(by_alias=True, exclude_none=True, exclude={"meta"})


async def update_task(session: ClientSession, task_id: Any, responses: Any) -> dict[str, Any]:
    params = _TaskParams(task_id=task_id, inputResponses=responses)
    ack = await session.send_request(_request(_Update, params), _Ack)
    return ack.model_dump(by_alias=True, exclude_none=True, exclude={"meta"})


async def wait_for_end(session: ClientSession, task_id: str, timeout: float = 120.0) -> TaskResult:
    """Poll tasks/get until the task ends, at its pollIntervalMs (at most 0.2 s apart here)."""
    with anyio.fail_after(timeout):
        while True:
            task = await get_task(session, task_id)
            if task.status in TERMINAL:
                return task
            await anyio.sleep(min(0.2, (task.poll_interval_ms or 1000) / 1000))


async def _resolve(created: CreateTaskResult, ctx: ClaimContext) -> CallToolResult:
    task = await wait_for_end(ctx.session, created.task_id)
    if task.status == "completed" and task.result is not None:
        return CallToolResult.model_validate(task.result)
    return CallToolResult.model_validate(
        {"content": [{"type": "text", "text": f"{task.status}: {task.status_message}"}], "isError": True}
    )


class TasksClient(ClientExtension):
    """Declares the extension; a task answer to tools/call is polled to its end (see the module doc)."""

    identifier = TASKS

    def claims(self) -> list[ResultClaim[Any]]:
        return [ResultClaim(result_type="task", model=CreateTaskResult, resolve=_resolve)]


async def submit_as_task(client: Client, tool: str, arguments: dict[str, Any]) -> CreateTaskResult:
    """Call `tool` and return the task it is answered with (the call fails if it is not a task)."""
    created = await client.session.call_tool(tool, arguments, allow_claimed=True)
    assert isinstance(created, CreateTaskResult), created
    return created
