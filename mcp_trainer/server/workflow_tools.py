"""MCP tools for the tasks that train nothing: prepare a data file, evaluate and compare saved models,
clean up intermediate files. Each queues a task and returns its task_id at once, as the training tools do;
its status then carries `outputs` (paths, the best model, what was removed) for the next step."""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver.tools.base import Tool

from mcp_trainer.server.arguments import make_tool
from mcp_trainer.server.context import CONTEXT, Ctx, SubmitResult, submit_with
from mcp_trainer.server.schema import with_parameters
from mcp_trainer.specs.cleanup import CleanupSpec
from mcp_trainer.specs.evaluate import EvaluateSpec
from mcp_trainer.specs.options import QueueOptions
from mcp_trainer.specs.preprocess import PreprocessSpec

__all__ = ["tools"]


async def submit_preprocess_task(ctx: Ctx, **arguments: Any) -> SubmitResult:
    """Queue the preparation of a data file for training: drop columns, filter rows, impute missing
    values, encode text columns, sample, and split into train and test files, in that order. Use it before
    submit_training_task when the data needs cleaning or a held-back test file. Columns are checked at
    once. When completed, get_task_status's outputs name the files (output_path, train_path, test_path):
    pass them as data_source to the next task."""
    return await submit_with(ctx, arguments)


async def submit_evaluation_task(ctx: Ctx, **arguments: Any) -> SubmitResult:
    """Queue the scoring of saved tabular models on a data file (say the test_path of a preprocess task):
    the metrics training reports, the report plots per model (get_model_report lists them), and a
    comparison naming the best (outputs: best_model_id, comparison, report_path). Use it to compare models
    trained on the same data, or to check a model on new data. Unknown or deleted models, mixed
    classifiers and regressors, and columns a model needs missing from the data are refused at once."""
    return await submit_with(ctx, arguments)


async def submit_cleanup_task(ctx: Ctx, **arguments: Any) -> SubmitResult:
    """Queue the removal of ended tasks' intermediate files: fine-tune checkpoints, work folders (a
    search's study), datasets written by preprocess tasks; by task_ids and/or older_than_days. Models go
    only with delete_models=true, and only those of the tasks named. Tasks still waiting or running are
    refused. dry_run=true says what would go. Outputs: removed, freed_bytes."""
    return await submit_with(ctx, arguments)


with_parameters(submit_preprocess_task, [CONTEXT], [PreprocessSpec, QueueOptions])
with_parameters(submit_evaluation_task, [CONTEXT], [EvaluateSpec, QueueOptions])
with_parameters(submit_cleanup_task, [CONTEXT], [CleanupSpec, QueueOptions])


def tools() -> list[Tool]:
    return [make_tool(f) for f in (submit_preprocess_task, submit_evaluation_task, submit_cleanup_task)]
