"""MCP tool for the user's own scripts: submit one as a task.

Listed only by a server started with `--allow-scripts-from` (app.py): elsewhere it could only refuse, and
its schema would cost every agent's context on every server that has scripts off. The service refuses a
script task all the same when the server has not opted in (preflight/script.py).
"""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver.tools.base import Tool

from mcp_trainer.server.arguments import make_tool
from mcp_trainer.server.context import CONTEXT, Ctx, SubmitResult, submit_with
from mcp_trainer.server.schema import with_parameters
from mcp_trainer.specs.options import SubmitOptions
from mcp_trainer.specs.script import ScriptSpec

__all__ = ["tools"]


async def submit_script_task(ctx: Ctx, **arguments: Any) -> SubmitResult:
    """Queue your own script (a Python file, or a program) as a task; returns its task_id at once. Off
    unless the server was started with --allow-scripts-from DIR; its files must be inside such a DIR. It
    reports progress with mcp_trainer.report or '@@mcp-trainer {json}' lines; cancel ends all it started;
    its output_dir becomes a model entry."""
    return await submit_with(ctx, arguments)


with_parameters(submit_script_task, [CONTEXT], [ScriptSpec, SubmitOptions])


def tools() -> list[Tool]:
    return [make_tool(submit_script_task)]
