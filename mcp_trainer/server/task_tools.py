"""MCP tools for tasks: submit a scikit-learn task, read, list, cancel and wait for tasks, the queue, logs."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcp.server.mcpserver.tools.base import Tool
from pydantic import BaseModel, Field

from mcp_trainer.server.arguments import make_tool
from mcp_trainer.server.context import CONTEXT, Ctx, SubmitResult, service_of, submit_with, tool_errors
from mcp_trainer.server.schema import with_parameters
from mcp_trainer.service.paging import MAX_PAGE
from mcp_trainer.service.tasks import MAX_LOG_LINES
from mcp_trainer.specs.options import SubmitOptions
from mcp_trainer.specs.tabular import TabularSpec
from mcp_trainer.views.tasks import AlertsView, QueueStatus, TaskPage, TaskStatusView

__all__ = ["MAX_WAIT_S", "TaskLogs", "tools"]

MAX_WAIT_S = 45.0  # desktop hosts cut a tool call after about 60 s

TaskId = Annotated[
    str, Field(description="A task id from submit_training_task, e.g. task_20261122T143000_8f3a2c1d")
]


class TaskLogs(BaseModel):
    task_id: str
    status: str
    lines: list[str]


async def submit_training_task(ctx: Ctx, **arguments: Any) -> SubmitResult:
    """Queue a scikit-learn model trained on a data file, tuned by an Optuna search scored by
    cross-validation, and return its task_id at once (training runs in the background). The data is
    checked first: a problem is refused with how to fix it, and nothing is queued. Then poll
    get_task_status or call wait_for_task. get_search_spaces lists each family's parameters and ranges,
    the scorers, and the bundled datasets."""
    return await submit_with(ctx, arguments)


with_parameters(submit_training_task, [CONTEXT], [TabularSpec, SubmitOptions])


async def get_task_status(ctx: Ctx, task_id: TaskId) -> TaskStatusView:
    """One task: status, progress percent, phase, trial i of n with the best score, elapsed and estimated
    remaining seconds; model_id and metrics once completed; a classified error if failed."""
    with tool_errors():
        return await service_of(ctx).status(task_id)


async def list_training_tasks(
    ctx: Ctx,
    status: Annotated[
        Literal["queued", "running", "retrying", "completed", "failed", "cancelled"] | None,
        Field(description="Only tasks in this status."),
    ] = None,
    task_type: Annotated[str | None, Field(description="Only tasks of this type.")] = None,
    user_id: Annotated[str | None, Field(description="Only this user's tasks.")] = None,
    limit: Annotated[int, Field(ge=1, le=MAX_PAGE, description="Tasks per page.")] = 20,
    cursor: Annotated[str | None, Field(description="next_cursor of the previous page.")] = None,
) -> TaskPage:
    """Tasks newest first, with filters; pass next_cursor back as cursor for the next page."""
    with tool_errors():
        return await service_of(ctx).list_tasks(
            status=status, task_type=task_type, user_id=user_id, limit=limit, cursor=cursor
        )


async def cancel_training_task(ctx: Ctx, task_id: TaskId) -> TaskStatusView:
    """Cancel a queued task (it never starts) or stop a running one (its processes are ended), and
    return the resulting status. Cancelling a completed, failed or cancelled task is an error."""
    with tool_errors():
        return await service_of(ctx).cancel(task_id)


async def stop_training_task(ctx: Ctx, task_id: TaskId) -> TaskStatusView:
    """End a running task now and keep the best so far: a search ends its trials in flight, then fits and
    saves its best trial; a fine-tune stops training and saves its model. Returns at once; the task
    completes when the model is saved (poll get_task_status). cancel_training_task discards instead."""
    with tool_errors():
        return await service_of(ctx).stop(task_id)


async def retry_task(ctx: Ctx, task_id: TaskId) -> TaskStatusView:
    """Queue a failed or cancelled task again, keeping its history (a search resumes its trials)."""
    with tool_errors():
        return await service_of(ctx).retry(task_id)


async def get_queue_status(ctx: Ctx) -> QueueStatus:
    """Running and waiting counts, why the next task waits, the cores, memory and GPUs running tasks
    hold, the thresholds, and the machine's CPU, memory, disk and GPU use."""
    with tool_errors():
        return await service_of(ctx).queue_status()


async def get_alerts(
    ctx: Ctx,
    min_severity: Annotated[
        Literal["info", "warning", "critical"], Field(description="Leave out alerts below this.")
    ] = "info",
) -> AlertsView:
    """What to look at now: stalled or overdue tasks, NaN or spiking loss, memory near a task's claim,
    the machine's memory, disks filling and GPU memory; most severe first."""
    with tool_errors():
        return await service_of(ctx).alerts(min_severity)


async def wait_for_task(
    ctx: Ctx,
    task_id: TaskId,
    timeout_s: Annotated[
        float, Field(ge=0, le=MAX_WAIT_S, description=f"Seconds to wait at most (≤ {MAX_WAIT_S:.0f}).")
    ] = 30.0,
) -> TaskStatusView:
    """Wait until the task ends or timeout_s passes, sending progress notifications meanwhile; returns
    the status either way. Call it again to keep waiting. Abandoning the wait never cancels the task."""
    reported = [0.0]  # progress notifications must not go backwards (a retry restarts a task's percent)

    async def notify(view: TaskStatusView) -> None:
        detail = f"{view.status.value}: {view.phase}"
        if view.trial is not None and view.n_trials:
            detail += f", trial {view.trial}/{view.n_trials}, best {view.best_score}"
        if view.eta_s is not None:
            detail += f", ~{view.eta_s:.0f} s left"
        reported[0] = max(reported[0], view.progress)
        await ctx.report_progress(reported[0], 100.0, detail)

    with tool_errors():
        return await service_of(ctx).wait(task_id, min(timeout_s, MAX_WAIT_S), on_progress=notify)


async def get_task_logs(
    ctx: Ctx,
    task_id: TaskId,
    tail: Annotated[int, Field(ge=1, le=MAX_LOG_LINES, description="How many of the last lines.")] = 100,
) -> TaskLogs:
    """The last lines logged by the task's worker process (all attempts)."""
    with tool_errors():
        service = service_of(ctx)
        lines = await service.logs(task_id, tail)
        return TaskLogs(task_id=task_id, status=(await service.status(task_id)).status.value, lines=lines)


def tools() -> list[Tool]:
    return [
        make_tool(f)
        for f in (
            submit_training_task,
            get_task_status,
            list_training_tasks,
            cancel_training_task,
            stop_training_task,
            retry_task,
            get_queue_status,
            get_alerts,
            wait_for_task,
            get_task_logs,
        )
    ]
