"""Serving the MCP tools over stdio, answering messages the SDK cannot parse.

The SDK's stdio transport drops a line it cannot parse (JSON nested deeper than its parser allows, say)
without a reply, and the client waits for an answer that never comes. Here such a line gets a JSON-RPC
parse error naming the request's id where it can be read, and saying what to change.
"""

from __future__ import annotations

import re
from typing import Any

import anyio
import mcp_types as types
from mcp.server.mcpserver import MCPServer
from mcp.server.stdio import stdio_server
from mcp.shared._context_streams import create_context_streams
from mcp.shared.message import SessionMessage
from pydantic import ValidationError

__all__ = ["parse_error_reply", "run_stdio"]

_ID = re.compile(r'"id"\s*:\s*(-?\d{1,18}|"(?:[^"\\]|\\.){0,200}")')


def parse_error_reply(exc: Exception) -> types.JSONRPCError | None:
    """The reply to a line that did not parse as JSON, or None when `exc` is something else."""
    if not isinstance(exc, ValidationError):
        return None
    errors = exc.errors(include_url=False)
    if not errors or errors[0]["type"] != "json_invalid":
        return None
    raw = errors[0].get("input")
    found = _ID.search(raw[:10_000]) if isinstance(raw, str) else None
    request_id: int | str | None = None
    if found is not None:
        text = found.group(1)
        request_id = int(text) if text.lstrip("-").isdigit() else text[1:-1]
    why = str(errors[0].get("ctx", {}).get("error") or errors[0]["msg"]).removeprefix("Invalid JSON: ")
    message = f"The message could not be parsed as JSON ({why})."
    if "recursion" in why:
        message += " Its arguments are nested too deeply: flatten them."
    return types.JSONRPCError(
        jsonrpc="2.0", id=request_id, error=types.ErrorData(code=types.PARSE_ERROR, message=message)
    )


async def run_stdio(server: MCPServer[Any]) -> None:
    """`server.run()` on stdio, with an answer to every line, parseable or not."""
    lowlevel = server._lowlevel_server  # the SDK's own run_stdio_async does the same
    async with stdio_server() as (read_stream, write_stream):
        forward, screened = create_context_streams[SessionMessage | Exception](0)

        async def screen() -> None:
            async with forward, read_stream:
                async for item in read_stream:
                    reply = parse_error_reply(item) if isinstance(item, Exception) else None
                    if reply is not None:
                        await write_stream.send(SessionMessage(message=reply))
                    else:
                        await forward.send(item)

        async with anyio.create_task_group() as tg:
            tg.start_soon(screen)
            await lowlevel.run(screened, write_stream, lowlevel.create_initialization_options())
            tg.cancel_scope.cancel()
