"""The resource requests of the MCP server: trainer:// URIs are answered here (resources.py), any other
(a UI resource an extension adds, say) by MCPServer's own handlers, which these wrap.

`install` adds to the server's low-level handlers: resources/list, resources/templates/list and
resources/read (trainer:// first, then MCPServer's), completion/complete (completion.py), and the
subscription requests (subscriptions.py).
"""

from __future__ import annotations

from typing import Any

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import Server
from mcp.server.mcpserver import MCPServer

from mcp_trainer.server import resources
from mcp_trainer.server.completion import complete
from mcp_trainer.server.subscriptions import Subscriptions
from mcp_trainer.service.training import TrainingService

__all__ = ["install"]

Ctx = ServerRequestContext[TrainingService, Any]


def _previous(server: Server[TrainingService], method: str) -> Any:
    entry = server.get_request_handler(method)
    if entry is None:  # MCPServer registers every one of them
        raise RuntimeError(f"the server has no {method} handler to extend")
    return entry.handler


def install(server: MCPServer[TrainingService], subscriptions: Subscriptions) -> None:
    """Answer trainer:// resources, completions and subscriptions on `server`."""
    lowlevel = server._lowlevel_server  # the SDK's own MCPServer registers its handlers there too
    list_resources = _previous(lowlevel, "resources/list")
    list_templates = _previous(lowlevel, "resources/templates/list")
    read_resource = _previous(lowlevel, "resources/read")

    async def on_list(ctx: Ctx, params: types.PaginatedRequestParams | None) -> types.ListResourcesResult:
        found: types.ListResourcesResult = await list_resources(ctx, params)
        mine = await resources.listed(ctx.lifespan_context)
        return found.model_copy(update={"resources": [*mine, *found.resources]})

    async def on_templates(
        ctx: Ctx, params: types.PaginatedRequestParams | None
    ) -> types.ListResourceTemplatesResult:
        found: types.ListResourceTemplatesResult = await list_templates(ctx, params)
        return found.model_copy(
            update={"resource_templates": [*resources.templates(), *found.resource_templates]}
        )

    async def on_read(
        ctx: Ctx, params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult | types.InputRequiredResult:
        if resources.is_trainer_uri(str(params.uri)):
            return await resources.read(ctx.lifespan_context, str(params.uri))
        answer: types.ReadResourceResult | types.InputRequiredResult = await read_resource(ctx, params)
        return answer

    lowlevel.add_request_handler("resources/list", types.PaginatedRequestParams, on_list)
    lowlevel.add_request_handler("resources/templates/list", types.PaginatedRequestParams, on_templates)
    lowlevel.add_request_handler("resources/read", types.ReadResourceRequestParams, on_read)
    lowlevel.add_request_handler("completion/complete", types.CompleteRequestParams, complete)
    subscriptions.install(lowlevel)
