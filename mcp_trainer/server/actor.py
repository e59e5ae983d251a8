"""Who makes a tool call, as the audit log records it (service/audit.py).

Over HTTP: "http", the client's address as the server sees it (a proxy's, behind one), and the name and
version the MCP client gave (clientInfo). Over stdio: "stdio" and the client's name and version; an
in-memory client (tests) reads as stdio too. The client's name is whatever the client says: it labels,
it does not authenticate (the token does, over HTTP).
"""

from __future__ import annotations

import os
from typing import Any

from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import Context

__all__ = ["actor_of", "actor_of_request"]


def actor_of(ctx: Context[Any, Any], tool: str) -> dict[str, object]:
    """The actor of a call of `tool` made in the request `ctx` belongs to."""
    try:
        request_context = ctx.request_context
    except ValueError:  # not in a request
        return {"via": "stdio", "tool": tool, "pid": os.getpid()}
    return actor_of_request(request_context, tool)


def actor_of_request(request_context: ServerRequestContext[Any, Any], tool: str) -> dict[str, object]:
    """The actor of a request (a tool call, or a method such as `tasks/cancel`) named `tool`."""
    actor: dict[str, object] = {"via": "stdio"}
    request = request_context.request
    if request is not None:
        actor["via"] = "http"
        peer = getattr(request, "client", None)
        if peer is not None:
            actor["address"] = f"{peer.host}:{peer.port}"
    params = request_context.session.client_params
    if params is not None:
        info = params.client_info
        actor["client"] = f"{info.name}/{info.version}"
    actor["tool"] = tool
    actor["pid"] = os.getpid()  # the server process that served it
    return actor
