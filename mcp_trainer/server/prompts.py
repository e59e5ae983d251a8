"""MCP prompts for the common journeys: train a classifier on a file, compare models, and find out why a
task failed. The last one reads the task (status, error, retry plan, warnings and its log's last lines)
so that the conversation starts from the facts, not from a guess."""

from __future__ import annotations

import json
from typing import Annotated

from mcp.server.mcpserver.prompts.base import Prompt, UserMessage
from pydantic import Field

from mcp_trainer.errors import TrainerError
from mcp_trainer.server.context import Ctx, service_of

__all__ = ["prompts"]

LOG_LINES = 40


def train_classifier(
    data_source: Annotated[str, Field(description="Absolute path of the data file, or sklearn:<name>.")],
    target_column: Annotated[str, Field(description="The column to predict (blank: ask me).")] = "",
) -> list[UserMessage]:
    """Train a classifier on a data file: a search across model families, then the result explained."""
    target = f"the column {target_column!r}" if target_column else "the column I tell you (ask me which)"
    return [
        UserMessage(
            f"Train a classifier on {data_source} that predicts {target}.\n"
            "1. Call submit_training_task with task_type='auto_classification' (a search across the model "
            "families), that data_source and target_column; if it is refused, tell me the reason and the fix "
            "it suggests, in a sentence.\n"
            "2. Follow it with wait_for_task (call it again while it runs), telling me the trial and the "
            "best score so far in one line each time.\n"
            "3. When it completes, show the held-out metrics from get_task_status and the report plots with "
            "get_model_report, and say in two sentences how good the model is and what would likely improve "
            "it. If it fails, read get_task_logs and explain the error's kind and hint."
        )
    ]


def compare_models(
    data_source: Annotated[
        str, Field(description="Data file to compare on (its held-out part is used); blank: my saved models.")
    ] = "",
    target_column: Annotated[str, Field(description="The column to predict.")] = "",
) -> list[UserMessage]:
    """Compare model families on a data file (a pipeline), or the models already trained."""
    if data_source:
        ask = (
            f"Compare model families on {data_source}, predicting {target_column or 'the column I name'}.\n"
            "Use submit_pipeline with template='compare_families' (list_pipeline_templates shows its "
            "arguments): it splits the file, trains the families in parallel on the training part and "
            "evaluates them all on the held-out part. Poll get_pipeline_status and report each stage as it "
            "ends; at the end show the evaluate stage's comparison table (best first) and name the best "
            "model with its primary metric."
        )
    else:
        ask = (
            "Compare the models I have trained: call list_models, group them by task (classification or "
            "regression) and target, and show a table of their held-out metrics, best first. Then suggest "
            "an evaluate task (submit_evaluation_task) on a held-out file for the two best of each group."
        )
    return [UserMessage(ask)]


async def why_did_task_fail(
    ctx: Ctx, task_id: Annotated[str, Field(description="The task id, e.g. task_20261122T143000_8f3a2c1d.")]
) -> list[UserMessage]:
    """Explain why a task failed (or was cancelled, or retries) and what to do about it."""
    service = service_of(ctx)
    try:
        view = await service.status(task_id)
        lines = await service.logs(task_id, LOG_LINES)
    except TrainerError as exc:
        return [UserMessage(f"I asked why task {task_id} failed, but it cannot be read: {exc}")]
    facts = {
        "status": view.status.value,
        "task_type": view.task_type,
        "error": view.error.model_dump(mode="json") if view.error else None,
        "retry_plan": view.retry_plan,
        "warnings": view.warnings,
        "attempts": f"{view.attempts} of {view.max_attempts}",
        "waiting_for": view.waiting_for,
    }
    return [
        UserMessage(
            f"Why did task {task_id} end as it did, and what should I do? Here is its status:\n"
            f"{json.dumps(facts, indent=2)}\n\nAnd the last {len(lines)} lines of its log:\n"
            + "\n".join(lines)
            + "\n\nExplain the cause in plain words (the error's kind tells whether retrying as it is can "
            "help: worker_lost, out_of_memory and disk_full can; data_error, timeout and script_error need "
            "a change), then give the exact next call: retry_task, or a new submit with the arguments to "
            "change."
        )
    ]


def prompts() -> list[Prompt]:
    return [Prompt.from_function(f) for f in (train_classifier, compare_models, why_did_task_fail)]
