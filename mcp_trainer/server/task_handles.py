"""A queue task or a pipeline as the MCP tasks extension shows it: the spec's `Task` object (SEP-2663).

The queue is the store. A task's handle is its queue id (`task_...`, or `pipeline_...` for a pipeline),
and every field below is computed from the record on each read, so a handle answers the same after a
restart of the server, from any server process sharing the queue. The mapping:

- queued, running, retrying: `working`, with a `statusMessage` (position, phase, trial, best, eta, plan);
- completed: `completed`, with `result`: the CallToolResult whose content is the task's status;
- failed: `completed`, with `result` marked `isError: true`: the classified error and its hint;
- cancelled: `cancelled`, with a `statusMessage` saying why.

A failed training is a tool-level failure, not a JSON-RPC error: the spec keeps the `failed` status for
requests that failed with a JSON-RPC error and says a tool result with `isError: true` makes the task
`completed`. Its `statusMessage` says "failed" in words, for people.
"""

from __future__ import annotations

from typing import Any

from mcp.types import CallToolResult, ContentBlock, TextContent
from pydantic import BaseModel

from mcp_trainer.records import TaskRecord, TaskStatus
from mcp_trainer.views.pipelines import PipelineStatusView
from mcp_trainer.views.tasks import TaskStatusView, iso

__all__ = ["POLL_RUNNING_MS", "POLL_WAITING_MS", "pipeline_handle", "task_handle"]

POLL_RUNNING_MS = 2000  # a running task's progress changes about once a second (the owner writes it)
POLL_WAITING_MS = 5000  # a waiting task or a pipeline changes more slowly

_TERMINAL = {
    TaskStatus.COMPLETED: "completed",
    TaskStatus.FAILED: "completed",  # with an error result
    TaskStatus.CANCELLED: "cancelled",
}


def task_handle(record: TaskRecord, view: TaskStatusView) -> dict[str, Any]:
    """The `Task` for a queue task (`view` is its status as get_task_status gives it), with `result`
    once it has ended completed or failed."""
    updated = max(
        [record.created_at, *(t.at for t in record.history[-1:]), record.progress.updated_at or 0.0]
    )
    status = _TERMINAL.get(view.status, "working")
    handle = _handle(view.task_id, status, _task_message(view), view.created_at, iso(updated) or "")
    if status == "working":
        handle["pollIntervalMs"] = POLL_RUNNING_MS if view.status is TaskStatus.RUNNING else POLL_WAITING_MS
    elif view.status is not TaskStatus.CANCELLED:
        handle["result"] = _tool_result(view, handle["statusMessage"], view.status is TaskStatus.FAILED)
    return handle


def pipeline_handle(view: PipelineStatusView) -> dict[str, Any]:
    """The `Task` for a pipeline, with `result` once it has ended completed or failed."""
    times = [view.created_at, view.finished_at or ""]
    times += [t for s in view.stages for t in (s.started_at or "", s.finished_at or "")]
    status = {"completed": "completed", "failed": "completed", "cancelled": "cancelled"}.get(
        view.status, "working"
    )
    handle = _handle(view.pipeline_id, status, _pipeline_message(view), view.created_at, max(times))
    if status == "working":
        handle["pollIntervalMs"] = POLL_WAITING_MS
    elif view.status != "cancelled":
        handle["result"] = _tool_result(view, handle["statusMessage"], view.status == "failed")
    return handle


def _handle(handle_id: str, status: str, message: str, created: str, updated: str) -> dict[str, Any]:
    # ttlMs null: ended tasks are never deleted, only archived (queue/archive/), where they stay readable.
    return {
        "taskId": handle_id,
        "status": status,
        "statusMessage": message,
        "createdAt": created,
        "lastUpdatedAt": max(created, updated),
        "ttlMs": None,
    }


def _tool_result(view: BaseModel, message: str, is_error: bool) -> dict[str, Any]:
    """What the tool call would have returned had it waited for the end: the status, as get_task_status
    (or get_pipeline_status) answers it; a failure leads with its sentence and is an error result."""
    content: list[ContentBlock] = [TextContent(type="text", text=view.model_dump_json(indent=2))]
    if is_error:
        content.insert(0, TextContent(type="text", text=message))
    result = CallToolResult(
        content=content,
        structured_content=view.model_dump(mode="json"),
        is_error=is_error,
    )
    return result.model_dump(by_alias=True, mode="json", exclude_none=True)


def _task_message(view: TaskStatusView) -> str:
    if view.status is TaskStatus.QUEUED:
        if view.waiting_for:
            return f"Queued: {view.waiting_for}."
        if view.queue_position is None:
            return "Queued: starting."
        if view.queue_position == 1:
            return "Queued: next to start."
        return f"Queued: {view.queue_position - 1} task(s) start before it."
    if view.status is TaskStatus.RUNNING:
        text = f"Running: {view.phase}, {view.progress:.0f}%"
        if view.trial is not None and view.n_trials:
            text += f", trial {view.trial}/{view.n_trials}"
        if view.best_score is not None:
            text += f", best {view.best_score:.4g}"
        if view.eta_s is not None:
            text += f", ~{view.eta_s:.0f} s left"
        if view.cancel_requested:
            text += "; cancel requested, stopping"
        return text + "."
    if view.status is TaskStatus.RETRYING:
        error = f" ({view.error.kind.value}: {view.error.message})" if view.error else ""
        plan = f" {view.retry_plan}" if view.retry_plan else ""
        return f"Retrying: attempt {view.attempts} of {view.max_attempts} failed{error}.{plan}"
    if view.status is TaskStatus.COMPLETED:
        made = f"model {view.model_id}" if view.model_id else "no model"
        if view.metrics:
            made += " (" + ", ".join(f"{k} {v:g}" for k, v in view.metrics.items()) + ")"
        return f"Completed: {made}."
    if view.status is TaskStatus.FAILED:
        if view.error is None:
            return "Failed."
        hint = f" {view.error.hint}" if view.error.hint else ""
        return f"Failed ({view.error.kind.value}): {view.error.message}{hint}"
    if view.error is not None:  # cancelled because a task it depends on failed
        return f"Cancelled: {view.error.message}"
    return "Cancelled."


def _pipeline_message(view: PipelineStatusView) -> str:
    done = f"{view.stages_completed} of {view.stages_total} stages completed"
    if view.status == "failed":
        failed = [f"{s.name}: {s.error or s.note or s.status}" for s in view.stages if s.status == "failed"]
        return f"Failed: {done}; " + "; ".join(failed or ["a stage failed"]) + "."
    return f"{view.status.capitalize()}: {done}, {view.progress:.0f}%."
