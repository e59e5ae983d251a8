"""The dashboard over HTTP: the page at /dashboard and its JSON API under /dashboard/api/, served by the
same ASGI app as /mcp.

Every route passes the MCP endpoint's own Host/Origin checks (the transport's DNS-rebinding protection,
with the same settings), and a POST must also be `application/json`: a form or a page of another origin
cannot send one without a CORS preflight, which this server never grants. When the server has a token,
`server/http.py: BearerToken` asks it of every API call, as of /mcp; the page itself carries no data and
is served without it, then sends the token as a header (see the README's Dashboard section for why a
header and not a cookie).

The API answers with the same views as the tools (`mcp_trainer/views/`): `GET queue`
(get_queue_status), `GET tasks` (list_training_tasks), `GET tasks/{id}` (get_task_status),
`GET tasks/{id}/logs` (get_task_logs), `GET alerts` (get_alerts), `POST tasks/{id}/cancel`
(cancel_training_task) and `POST tasks/{id}/retry` (retry_task). A refusal is JSON with the service's
sentence: `{"error", "message", "hint"}`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from mcp_trainer.errors import InvalidInputError, InvalidStateError, TaskNotFoundError, TrainerError
from mcp_trainer.server.dashboard.page import page
from mcp_trainer.server.task_tools import TaskLogs
from mcp_trainer.service.audit import acting_as
from mcp_trainer.service.paging import MAX_PAGE
from mcp_trainer.service.tasks import MAX_LOG_LINES
from mcp_trainer.service.training import TrainingService

__all__ = ["API", "PAGE_PATH", "DashboardWeb"]

PAGE_PATH = "/dashboard"
API = "/dashboard/api"
_NO_STORE = {"Cache-Control": "no-store"}
_PAGE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
Call = Callable[[TrainingService, Request], Awaitable[BaseModel]]


class DashboardWeb:
    """The dashboard's routes, for `build_server(..., web=...)`: it registers them on the MCP server
    (beside /mcp) and, while the server's lifespan runs, serves them from its TrainingService."""

    def __init__(self, security: TransportSecuritySettings | None = None) -> None:
        self._guard = TransportSecurityMiddleware(security)
        self._service: TrainingService | None = None
        self._served = page("http")  # read from the package now, not on the event loop at the first visit

    @contextlib.contextmanager
    def serving(self, service: TrainingService) -> Iterator[None]:
        """Serve the API from `service` inside this block (the server's lifespan)."""
        self._service = service
        try:
            yield
        finally:
            self._service = None

    def install(self, server: MCPServer[Any]) -> None:
        """Add the page and the API to the routes `server.streamable_http_app()` serves."""
        server.custom_route(PAGE_PATH, ["GET"])(self._page)
        get = {
            "queue": _queue,
            "tasks": _tasks,
            "alerts": _alerts,
            "tasks/{task_id}": _task,
            "tasks/{task_id}/logs": _logs,
        }
        for path, call in get.items():
            server.custom_route(f"{API}/{path}", ["GET"])(self._api(call, post=False))
        for path, call in {"tasks/{task_id}/cancel": _cancel, "tasks/{task_id}/retry": _retry}.items():
            server.custom_route(f"{API}/{path}", ["POST"])(self._api(call, post=True))

    async def _page(self, request: Request) -> Response:
        refused = await self._guard.validate_request(request)
        if refused is not None:
            return refused
        headers = {**_PAGE_HEADERS, "Content-Security-Policy": self._served.csp, **_NO_STORE}
        return HTMLResponse(self._served.html, headers=headers)

    def _api(self, call: Call, *, post: bool) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            refused = await self._guard.validate_request(request, is_post=post)
            if refused is not None:
                return refused
            service = self._service
            if service is None:
                return _refusal(503, "unavailable", "The server is starting or stopping.", "Try again soon.")
            try:
                with acting_as(_actor(request, call.__name__.strip("_"))):
                    result = await call(service, request)
            except TrainerError as exc:
                return _refusal(_status_of(exc), type(exc).__name__, exc.message, exc.hint)
            return JSONResponse(result.model_dump(mode="json"), headers=_NO_STORE)

        return endpoint


def _refusal(status: int, error: str, message: str, hint: str | None) -> JSONResponse:
    return JSONResponse({"error": error, "message": message, "hint": hint}, status, headers=_NO_STORE)


def _status_of(exc: TrainerError) -> int:
    if isinstance(exc, TaskNotFoundError):
        return 404
    if isinstance(exc, InvalidStateError):
        return 409
    return 400


def _actor(request: Request, call: str) -> dict[str, object]:
    """Who acts, for the audit log: the dashboard, from this address (a proxy's, behind one)."""
    actor: dict[str, object] = {"via": "dashboard", "tool": call, "pid": os.getpid()}
    if request.client is not None:
        actor["address"] = f"{request.client.host}:{request.client.port}"
    return actor


def _query(request: Request, allowed: Mapping[str, str]) -> dict[str, str]:
    """The query's parameters, each named in `allowed` (name -> what it takes); any other is refused."""
    given = dict(request.query_params)
    for name in given:
        if name not in allowed:
            known = ", ".join(f"{k} ({v})" for k, v in allowed.items()) or "none"
            raise InvalidInputError(f"Unknown query parameter {name!r}.", f"This call takes: {known}.")
    return given


def _whole(value: str | None, name: str, low: int, high: int, default: int) -> int:
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise InvalidInputError(f"{name} must be a whole number (got {value!r}).") from None
    if not low <= number <= high:
        raise InvalidInputError(f"{name} must be between {low} and {high} (got {number}).")
    return number


async def _queue(service: TrainingService, request: Request) -> BaseModel:
    _query(request, {})
    return await service.queue_status()


async def _tasks(service: TrainingService, request: Request) -> BaseModel:
    q = _query(
        request,
        {
            "status": "queued, running, ...",
            "task_type": "a task type",
            "user_id": "a user",
            "limit": f"1-{MAX_PAGE}",
            "cursor": "next_cursor of the previous page",
        },
    )
    return await service.list_tasks(
        status=q.get("status"),
        task_type=q.get("task_type"),
        user_id=q.get("user_id"),
        limit=_whole(q.get("limit"), "limit", 1, MAX_PAGE, 20),
        cursor=q.get("cursor"),
    )


async def _alerts(service: TrainingService, request: Request) -> BaseModel:
    q = _query(request, {"min_severity": "info, warning or critical"})
    return await service.alerts(q.get("min_severity", "info"))


async def _task(service: TrainingService, request: Request) -> BaseModel:
    _query(request, {})
    return await service.status(request.path_params["task_id"])


async def _logs(service: TrainingService, request: Request) -> BaseModel:
    q = _query(request, {"tail": f"1-{MAX_LOG_LINES}"})
    task_id = request.path_params["task_id"]
    lines = await service.logs(task_id, _whole(q.get("tail"), "tail", 1, MAX_LOG_LINES, 100))
    return TaskLogs(task_id=task_id, status=(await service.status(task_id)).status.value, lines=lines)


async def _cancel(service: TrainingService, request: Request) -> BaseModel:
    _query(request, {})
    return await service.cancel(request.path_params["task_id"])


async def _retry(service: TrainingService, request: Request) -> BaseModel:
    _query(request, {})
    return await service.retry(request.path_params["task_id"])
