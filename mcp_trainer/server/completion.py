"""`completion/complete`: the ids and plot names a client may type into a resource template (or a prompt).

An argument is completed by its name, whatever the template or prompt it belongs to: `task_id`,
`model_id` and `pipeline_id` with the ids that start with what was typed, newest first; `plot` with the
plots of the model named by `model_id` in the context arguments (all plot names when none is named).
At most `MAX_VALUES` values; `has_more` says when there were more. Other arguments get no values.
"""

from __future__ import annotations

from typing import Any

import mcp_types as types
from mcp.server.context import ServerRequestContext

from mcp_trainer.artifacts.model_dir import REPORT_PLOTS
from mcp_trainer.errors import TrainerError
from mcp_trainer.service.training import TrainingService

__all__ = ["MAX_VALUES", "complete"]

MAX_VALUES = 100  # the protocol's limit on one answer's values


async def _plots(service: TrainingService, model_id: str | None) -> list[str]:
    """The plots `model_id` has (its evaluations' too); every plot name when it names no model."""
    if not model_id:
        return list(REPORT_PLOTS)
    try:
        report, _ = await service.model_report(model_id, [])
    except TrainerError:  # not a model: nothing to offer
        return []
    names = [p.name for p in report.plots] + report.being_drawn
    return names + [p.name for e in report.evaluations for p in e.plots]


async def _candidates(service: TrainingService, name: str, typed: str, context: dict[str, str]) -> list[str]:
    limit = MAX_VALUES + 1  # one more tells that there are more
    if name == "task_id":
        return await service.task_ids(typed, limit)
    if name == "model_id":
        return await service.model_ids(typed, limit)
    if name == "pipeline_id":
        return await service.pipeline_ids(typed, limit)
    if name == "plot":
        return [p for p in await _plots(service, context.get("model_id")) if p.startswith(typed)]
    return []


async def complete(
    ctx: ServerRequestContext[TrainingService, Any], params: types.CompleteRequestParams
) -> types.CompleteResult:
    """The completion of one argument (see the module's docstring)."""
    context = (params.context.arguments if params.context else None) or {}
    found = await _candidates(ctx.lifespan_context, params.argument.name, params.argument.value, context)
    return types.CompleteResult(
        completion=types.Completion(values=found[:MAX_VALUES], has_more=len(found) > MAX_VALUES)
    )
