"""MCP tools for saved models: list them, describe one, show its report, predict with it, delete it."""

from __future__ import annotations

import base64
from typing import Annotated, Any

from mcp.server.mcpserver.tools.base import Tool
from mcp.types import CallToolResult, ContentBlock, ImageContent, TextContent
from pydantic import BaseModel, Field

from mcp_trainer.artifacts.model_dir import REPORT_PLOTS
from mcp_trainer.server.arguments import make_tool
from mcp_trainer.server.context import Ctx, service_of, tool_errors
from mcp_trainer.server.links import model_links
from mcp_trainer.service.models import MAX_PREDICT_ROWS
from mcp_trainer.service.paging import MAX_PAGE
from mcp_trainer.specs.sources import PathText
from mcp_trainer.views.models import ModelInfo, ModelPage, ModelReport, Predictions

__all__ = ["ModelId", "tools"]

ModelId = Annotated[
    str,
    Field(description="A model id from get_task_status or list_models, e.g. model_20261122T143000_8f3a2c1d"),
]


class DeletedModel(BaseModel):
    model_id: str
    deleted: bool


async def list_models(
    ctx: Ctx,
    task_type: Annotated[str | None, Field(description="Only models of this task type.")] = None,
    user_id: Annotated[str | None, Field(description="Only this user's models.")] = None,
    limit: Annotated[int, Field(ge=1, le=MAX_PAGE, description="Models per page.")] = 20,
    cursor: Annotated[str | None, Field(description="next_cursor of the previous page.")] = None,
) -> ModelPage:
    """Saved models newest first, with their held-out metrics."""
    with tool_errors():
        return await service_of(ctx).list_models(
            task_type=task_type, user_id=user_id, limit=limit, cursor=cursor
        )


async def get_model_info(ctx: Ctx, model_id: ModelId) -> ModelInfo:
    """Everything recorded about a model: best parameters, CV and held-out metrics, features and their
    types, target and classes, data file hash, library versions, timings, report files."""
    with tool_errors():
        return await service_of(ctx).model_info(model_id)


async def get_model_report(
    ctx: Ctx,
    model_id: ModelId,
    plots: Annotated[
        list[str] | None,
        Field(
            description=f"Plots to return; omit for all, [] for none. Names: {', '.join(REPORT_PLOTS)}; "
            "an evaluation's: '<task_id>/<name>'."
        ),
    ] = None,
) -> Annotated[CallToolResult, ModelReport]:
    """A model's readable summary (task, data, best parameters, metrics) as text, and its report plots as
    PNG images: search history, hyperparameter importances, and held-out confusion matrix, ROC and
    precision-recall curves (classification) or predicted-vs-actual and residuals (regression); and
    the model's evaluations on other data (submit_evaluation_task), with their plots. The answer stays
    small enough for a chat; its note says what was left out."""
    with tool_errors():
        report, images = await service_of(ctx).model_report(model_id, plots)
    text = report.summary.rstrip()
    for evaluation in report.evaluations:
        scores = ", ".join(f"{k} {v:g}" for k, v in evaluation.metrics.items())
        text += (
            f"\n\nEvaluation {evaluation.task_id} on {evaluation.data_source} ({evaluation.n_rows} rows): "
            f"{scores}"
        )
    if report.note:
        text += f"\n\nNote: {report.note}"
    content: list[ContentBlock] = [TextContent(type="text", text=text)]
    for name, png in images.items():
        content.append(TextContent(type="text", text=f"{name}.png"))
        content.append(
            ImageContent(type="image", data=base64.b64encode(png).decode("ascii"), mime_type="image/png")
        )
    content += model_links(model_id, [p.name for p in report.plots])
    # The summary is the text above: the structured part carries the rest, so a client shows it once.
    return CallToolResult(
        content=content, structured_content=report.model_dump(mode="json", exclude={"summary"})
    )


async def predict(
    ctx: Ctx,
    model_id: ModelId,
    rows: Annotated[
        list[dict[str, Any]] | None,
        Field(max_length=MAX_PREDICT_ROWS, description="Rows as {feature: value} objects (null = missing)."),
    ] = None,
    data_source: Annotated[
        PathText | None, Field(description="Or a data file / sklearn:<name> holding the feature columns.")
    ] = None,
) -> Predictions:
    """Batch predictions, with class probabilities for classifiers that estimate them. Runs in a separate
    process; a model file whose sha256 does not match its metadata is refused."""
    with tool_errors():
        return await service_of(ctx).predict(model_id, rows=rows, data_source=data_source)


async def delete_model(ctx: Ctx, model_id: ModelId) -> DeletedModel:
    """Delete a saved model's directory (model file, metadata, reports). It cannot be undone."""
    with tool_errors():
        await service_of(ctx).delete_model(model_id)
    return DeletedModel(model_id=model_id, deleted=True)


def tools() -> list[Tool]:
    return [make_tool(f) for f in (list_models, get_model_info, get_model_report, predict, delete_model)]
