"""The dashboard as an MCP App (the Apps extension the SDK ships, `io.modelcontextprotocol/ui`): the tool
`show_dashboard`, bound to the `ui://mcp-trainer/dashboard` page that hosts render in the chat.

Inside the host the page calls the existing tools through the host bridge (get_queue_status,
list_training_tasks, get_task_status, get_task_logs, cancel_training_task, retry_task): the same page as
the web one, with the other adapter. The tool itself answers with a short text summary of the queue (and
of the task named), which is all a client without Apps sees, and the same data as structured content.
"""

from __future__ import annotations

from typing import Annotated

from mcp.server.apps import Apps, client_supports_apps
from mcp.server.mcpserver.tools.base import Tool
from mcp.types import CallToolResult, TextContent
from pydantic import Field

from mcp_trainer.server.arguments import make_tool
from mcp_trainer.server.context import Ctx, service_of, tool_errors
from mcp_trainer.server.dashboard.page import page
from mcp_trainer.views.tasks import QueueStatus, TaskStatusView

__all__ = ["DASHBOARD_URI", "apps", "tools"]

DASHBOARD_URI = "ui://mcp-trainer/dashboard"


def apps() -> Apps:
    """The Apps extension with the dashboard page as its `ui://` resource."""
    extension = Apps()
    extension.add_html_resource(
        DASHBOARD_URI,
        page("mcp-app").html,
        name="dashboard",
        title="mcp-trainer dashboard",
        description="The queue, a task's live progress and log, the machine and alerts; cancel and retry.",
        prefers_border=True,
    )
    return extension


def _summary(queue: QueueStatus, task: TaskStatusView | None) -> str:
    lines = [
        f"Queue: {queue.running} running of {queue.concurrency_limit}, {queue.queued} waiting, "
        f"{queue.counts.get('completed', 0)} completed, {queue.counts.get('failed', 0)} failed.",
    ]
    if queue.running_tasks:
        lines.append("Running: " + ", ".join(queue.running_tasks) + ".")
    if task is not None:
        line = f"{task.task_id}: {task.status.value}, {task.progress:g}% ({task.phase})"
        if task.trial is not None and task.n_trials:
            line += f", trial {task.trial}/{task.n_trials}, best {task.best_score}"
        if task.eta_s is not None:
            line += f", ~{task.eta_s:.0f} s left"
        lines.append(line + ".")
    if queue.alerts:
        lines.append(f"Alerts: {len(queue.alerts)} (get_alerts lists them).")
    return "\n".join(lines)


async def show_dashboard(
    ctx: Ctx,
    task_id: Annotated[str | None, Field(description="A task to follow.")] = None,
) -> CallToolResult:
    """Show the live dashboard in the chat: the queue with progress bars, a task's curves and log, the
    machine and alerts; cancel and retry buttons. Without MCP Apps: a text summary."""
    with tool_errors():
        service = service_of(ctx)
        queue = await service.queue_status()
        task = await service.status(task_id) if task_id is not None else None
    text = _summary(queue, task)
    if not client_supports_apps(ctx):
        text += (
            "\nThis client does not show MCP Apps: served over HTTP, the same dashboard is at /dashboard; "
            "get_queue_status and get_task_status give these numbers."
        )
    data = {
        **queue.model_dump(mode="json", include={"running", "queued", "concurrency_limit", "counts"}),
        "running_tasks": queue.running_tasks,
        "task": task.model_dump(mode="json") if task else None,
    }
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=data)


def tools() -> list[Tool]:
    """`show_dashboard`, its arguments checked like every tool's, bound to the dashboard page."""
    tool = make_tool(show_dashboard)
    return [tool.model_copy(update={"meta": {"ui": {"resourceUri": DASHBOARD_URI}}})]
