"""MCP tool for queue maintenance: prune ended tasks' work files, archive old tasks, report disk use."""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver.tools.base import Tool
from pydantic import Field

from mcp_trainer.server.arguments import make_tool
from mcp_trainer.server.context import Ctx, service_of, tool_errors
from mcp_trainer.views.maintenance import MaintenanceReport

__all__ = ["tools"]


async def run_maintenance(
    ctx: Ctx,
    dry_run: Annotated[bool, Field(description="Only report what would be removed or archived.")] = False,
) -> MaintenanceReport:
    """Prune ended tasks' checkpoints and old work folders, archive tasks ended long ago (still readable
    by get_task_status), and report disk use and failed tasks worth retrying."""
    with tool_errors():
        return await service_of(ctx).maintain(dry_run)


def tools() -> list[Tool]:
    return [make_tool(run_maintenance)]
