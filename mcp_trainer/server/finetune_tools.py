"""MCP tools for PyTorch fine-tunes: submit one, and generate with a causal LM fine-tune."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver.tools.base import Tool
from pydantic import Field

from mcp_trainer.preflight.finetune import MAX_NEW_TOKENS
from mcp_trainer.server.arguments import make_tool
from mcp_trainer.server.context import CONTEXT, Ctx, SubmitResult, service_of, submit_with, tool_errors
from mcp_trainer.server.schema import with_parameters
from mcp_trainer.specs.finetune import FinetuneSpec
from mcp_trainer.specs.options import SubmitOptions
from mcp_trainer.views.models import Generation

__all__ = ["tools"]


async def submit_finetune_task(ctx: Ctx, **arguments: Any) -> SubmitResult:
    """Queue a fine-tune of a local Hugging Face model on a text file and return its task_id at once.
    Runs on the GPU when the machine has one (else the CPU); get_task_status shows epoch, step of total,
    loss, learning rate, samples/s and GPU memory. The model directory and data are checked first (missing
    files, unknown columns, no examples, labels that do not fit the model's head are refused). A crashed
    or killed run resumes from its last checkpoint."""
    return await submit_with(ctx, arguments)


with_parameters(submit_finetune_task, [CONTEXT], [FinetuneSpec, SubmitOptions])


async def generate(
    ctx: Ctx,
    model_id: Annotated[str, Field(description="A causal_lm_finetune model id from list_models.")],
    prompt: Annotated[str, Field(min_length=1, max_length=20_000, description="Text to continue.")],
    max_new_tokens: Annotated[
        int, Field(ge=1, le=MAX_NEW_TOKENS, description="Tokens to generate at most.")
    ] = 64,
    temperature: Annotated[float, Field(ge=0, le=5, description="0 = greedy (deterministic).")] = 0.0,
    top_p: Annotated[float, Field(gt=0, le=1, description="Nucleus sampling: the share of mass kept.")] = 1.0,
    seed: Annotated[int, Field(ge=0, le=2**32 - 1, description="Seed of the sampling.")] = 0,
) -> Generation:
    """A short completion of `prompt` by a causal LM fine-tune (runs in a separate process)."""
    with tool_errors():
        return await service_of(ctx).generate(
            model_id, prompt, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, seed=seed
        )


def tools() -> list[Tool]:
    return [make_tool(submit_finetune_task), make_tool(generate)]
