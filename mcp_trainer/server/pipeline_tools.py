"""MCP tools for pipelines: submit one (stages of your own, or a ready template), read, list, cancel and
retry it, and list the templates."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcp.server.mcpserver.tools.base import Tool
from pydantic import Field

from mcp_trainer.errors import InvalidInputError
from mcp_trainer.server.arguments import make_tool
from mcp_trainer.server.context import Ctx, service_of, tool_errors
from mcp_trainer.service.paging import MAX_PAGE
from mcp_trainer.service.templates import TemplateList, template_stages, templates
from mcp_trainer.specs.pipeline import MAX_STAGES, StageSpec
from mcp_trainer.views.pipelines import PipelinePage, PipelineStatusView

__all__ = ["tools"]

PipelineId = Annotated[
    str, Field(description="A pipeline id from submit_pipeline, e.g. pipeline_20261122T143000_8f3a2c1d")
]


async def submit_pipeline(
    ctx: Ctx,
    name: Annotated[str, Field(min_length=1, max_length=200, description="A label for humans.")],
    stages: Annotated[
        list[StageSpec] | None,
        Field(
            max_length=MAX_STAGES,
            description="The stages, each {name, task: the arguments of a submit tool (task_type, ...), "
            "depends_on: [stage names], max_attempts}. A value in task may be ${stage.output} of a stage it "
            "needs, e.g. ${prep.train_path} or ${train.model_id}. Leave out when using a template.",
        ),
    ] = None,
    template: Annotated[
        str | None, Field(description="A ready template's name (list_pipeline_templates) instead of stages.")
    ] = None,
    template_arguments: Annotated[
        dict[str, Any] | None, Field(description="The template's arguments (list_pipeline_templates).")
    ] = None,
    user_id: Annotated[str | None, Field(max_length=200, description="Who it is for.")] = None,
    priority: Annotated[
        Literal["high", "normal", "low"], Field(description="Its stages' queue class.")
    ] = "normal",
) -> PipelineStatusView:
    """Queue a pipeline: stages that run as tasks once the stages they depend on have completed, in
    parallel where the graph allows, each taking earlier stages' outputs by reference. Everything is
    checked first (names, unknown stages, cycles, references to outputs a stage never makes, each stage's
    arguments and, for stages that refer to no other, their data); nothing is queued if anything is wrong.
    Returns the pipeline_id at once; poll get_pipeline_status."""
    with tool_errors():
        if (stages is None) == (template is None):
            raise InvalidInputError(
                "Give either stages or a template (with template_arguments), not both or neither.",
                "list_pipeline_templates lists the templates.",
            )
        if template is None and template_arguments is not None:
            raise InvalidInputError(
                "template_arguments go with a template.", "Name the template, or leave them out."
            )
        stage_list = (
            template_stages(template, template_arguments or {})
            if template is not None
            else [s.model_dump() for s in stages or []]
        )
        return await service_of(ctx).submit_pipeline(
            name, stage_list, user_id=user_id, priority=priority, template=template
        )


async def get_pipeline_status(ctx: Ctx, pipeline_id: PipelineId) -> PipelineStatusView:
    """A pipeline: its status and progress, and each stage's status, task_id, progress, times, outputs
    and, when it did not run, why; the graph as edges."""
    with tool_errors():
        return await service_of(ctx).pipeline_status(pipeline_id)


async def list_pipelines(
    ctx: Ctx,
    status: Annotated[
        Literal["queued", "running", "completed", "failed", "cancelled"] | None,
        Field(description="Only pipelines in this status."),
    ] = None,
    user_id: Annotated[str | None, Field(description="Only this user's pipelines.")] = None,
    limit: Annotated[int, Field(ge=1, le=MAX_PAGE, description="Pipelines per page.")] = 20,
    offset: Annotated[int, Field(ge=0, description="next_offset of the previous page.")] = 0,
) -> PipelinePage:
    """Pipelines newest first, with filters; pass next_offset back as offset for the next page."""
    with tool_errors():
        return await service_of(ctx).list_pipelines(
            status=status, user_id=user_id, limit=limit, offset=offset
        )


async def cancel_pipeline(ctx: Ctx, pipeline_id: PipelineId) -> PipelineStatusView:
    """Cancel every stage that has not finished: running ones are stopped, waiting ones never start.
    Completed stages keep their models and outputs."""
    with tool_errors():
        return await service_of(ctx).cancel_pipeline(pipeline_id)


async def retry_pipeline(ctx: Ctx, pipeline_id: PipelineId) -> PipelineStatusView:
    """Run a failed or cancelled pipeline's failed and cancelled stages again (and what follows them);
    completed stages are kept and never run again."""
    with tool_errors():
        return await service_of(ctx).retry_pipeline(pipeline_id)


async def list_pipeline_templates(ctx: Ctx) -> TemplateList:
    """Ready pipelines to pass to submit_pipeline as template + template_arguments: what each does, its
    arguments, and the stages it makes."""
    with tool_errors():
        return templates()


def tools() -> list[Tool]:
    return [
        make_tool(f)
        for f in (
            submit_pipeline,
            get_pipeline_status,
            list_pipelines,
            cancel_pipeline,
            retry_pipeline,
            list_pipeline_templates,
        )
    ]
