"""The MCP face: tools that validate, call the TrainingService, and shape results. No training logic here."""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.types import CallToolResult, ContentBlock, ImageContent, TextContent
from pydantic import BaseModel, Field

from mcp_trainer import __version__
from mcp_trainer.server_common import SubmitResult, service_of, submitted, tool_errors
from mcp_trainer.server_finetune import register_finetune_tools
from mcp_trainer.service import DEFAULT_CONCURRENCY, MAX_PAGE, TrainingService
from mcp_trainer.spaces import describe_spaces
from mcp_trainer.specs import MAX_FOLDS, MAX_TRIALS, TaskType
from mcp_trainer.views import (
    ModelInfo,
    ModelPage,
    ModelReport,
    Predictions,
    QueueStatus,
    TaskPage,
    TaskStatusView,
)

__all__ = ["MAX_WAIT_S", "SearchSpaces", "ServerConfig", "SubmitResult", "TaskLogs", "build_server"]

log = logging.getLogger(__name__)
MAX_WAIT_S = 45.0  # desktop hosts cut a tool call after about 60 s

INSTRUCTIONS = """\
Runs real training jobs on this machine. Training never happens inside a tool call:
1. submit_training_task returns a task_id at once; the task waits in a persistent queue.
2. Poll get_task_status (or wait_for_task, which returns within 45 s) until status is completed,
   failed or cancelled. Progress is numeric: percent, phase, trial i of n, best score, eta_s.
3. On completion the status names model_id and held-out metrics; on failure it gives a classified error
   with a hint. cancel_training_task stops a task for real. get_queue_status shows the load.
scikit-learn models: submit_training_task. PyTorch fine-tunes of a local Hugging Face model:
submit_finetune_task (GPU when there is one); then predict (classifiers) or generate (language models).
Paths (data_source) are paths on the machine that runs this server."""

ModelId = Annotated[
    str,
    Field(description="A model id from get_task_status or list_models, e.g. model_20261122T143000_8f3a2c1d"),
]
TaskId = Annotated[
    str, Field(description="Id returned by submit_training_task, e.g. task_20261122T143000_8f3a2c1d")
]


@dataclass(frozen=True)
class ServerConfig:
    queue_dir: Path = Path("queue")
    models_dir: Path = Path("trained_models")
    max_concurrent: int = DEFAULT_CONCURRENCY
    execute: bool = True
    # On SIGTERM/SIGINT hand running tasks back to the queue, then exit. For a process that only serves
    # (the CLI): a stdio server blocks in a read of stdin that no cancellation can interrupt.
    exit_on_signal: bool = False


class SearchSpaces(BaseModel):
    families: dict[str, Any]
    task_types: dict[str, Any]


class DeletedModel(BaseModel):
    model_id: str
    deleted: bool


class TaskLogs(BaseModel):
    task_id: str
    status: str
    lines: list[str]


async def _exit_on_signal(service: TrainingService) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("%s: handing running tasks back to the queue, then exiting", signal.Signals(signum).name)
            await service.shutdown_workers()
            logging.shutdown()
            os._exit(0)


def build_server(config: ServerConfig | None = None) -> MCPServer[TrainingService]:
    """The MCP server over a TrainingService built from `config` when a session starts."""
    cfg = config or ServerConfig()

    @contextlib.asynccontextmanager
    async def lifespan(_: MCPServer[TrainingService]) -> AsyncIterator[TrainingService]:
        async with TrainingService(
            cfg.queue_dir, cfg.models_dir, max_concurrent=cfg.max_concurrent, execute=cfg.execute
        ) as service:
            if not cfg.exit_on_signal:
                yield service
                return
            async with anyio.create_task_group() as tg:
                tg.start_soon(_exit_on_signal, service)
                yield service
                tg.cancel_scope.cancel()

    server: MCPServer[TrainingService] = MCPServer(
        "mcp-trainer", version=__version__, instructions=INSTRUCTIONS, lifespan=lifespan
    )

    @server.tool()
    async def submit_training_task(
        ctx: Context,
        task_type: Annotated[
            TaskType,
            Field(
                description="Model family and kind: *_classification predicts a category, *_regression a "
                "number (or several); auto_* searches across families and keeps the best. "
                "get_search_spaces lists each family's parameters."
            ),
        ],
        data_source: Annotated[
            str,
            Field(
                description="Absolute path of a .csv, .tsv, .jsonl or .parquet file with named columns, or a "
                "dataset bundled with scikit-learn: sklearn:iris, sklearn:wine, sklearn:breast_cancer, "
                "sklearn:digits (classification, target 'target'), sklearn:diabetes (regression, 'target'), "
                "sklearn:linnerud (regression, targets Weight, Waist, Pulse)."
            ),
        ],
        target_column: Annotated[
            str | list[str] | None,
            Field(
                description="Column to predict; regression accepts a list (multi-output). Required for a "
                "file; leave it out for a bundled sklearn:<name> dataset to predict its own target."
            ),
        ] = None,
        feature_columns: Annotated[
            list[str] | None, Field(description="Columns to use as inputs; default: all but the target.")
        ] = None,
        kernel: Annotated[
            Literal["linear", "rbf", "poly", "sigmoid"] | None,
            Field(description="Fix the kernel; leave unset to let the search choose."),
        ] = None,
        C: Annotated[
            float | None, Field(gt=0, le=1e6, description="Fix C; unset = tuned (1e-3..1e3).")
        ] = None,
        gamma: Annotated[
            float | Literal["scale", "auto"] | None,
            Field(description="Fix gamma (>0, or 'scale'/'auto'); unset = tuned (1e-4..10, log scale)."),
        ] = None,
        degree: Annotated[
            int | None, Field(ge=1, le=6, description="poly kernel degree; unset = tuned.")
        ] = None,
        epsilon: Annotated[
            float | None, Field(ge=0, le=1e3, description="svm_regression only: tube width; unset = tuned.")
        ] = None,
        scale_features: Annotated[bool, Field(description="Standardise numeric features.")] = True,
        optimize_hyperparameters: Annotated[
            bool, Field(description="Run an Optuna search; false = train once with fixed/default parameters.")
        ] = True,
        n_trials: Annotated[int, Field(ge=1, le=MAX_TRIALS, description="Search trials.")] = 50,
        cv_folds: Annotated[
            int, Field(ge=2, le=MAX_FOLDS, description="Cross-validation folds per trial.")
        ] = 5,
        scoring: Annotated[
            str | None,
            Field(
                description="Classification: accuracy (default), balanced_accuracy, f1_macro, f1_weighted, "
                "precision_macro, recall_macro, roc_auc. Regression: r2 (default), neg_mean_squared_error, "
                "neg_root_mean_squared_error, neg_mean_absolute_error."
            ),
        ] = None,
        test_size: Annotated[
            float, Field(gt=0, le=0.5, description="Held-out share for final metrics.")
        ] = 0.2,
        missing_values: Annotated[
            Literal["impute", "error"],
            Field(description="impute fills missing features (median / most frequent); error refuses them."),
        ] = "impute",
        validate_data: Annotated[
            bool,
            Field(description="Scan the whole file before queueing (false: header only, for huge files)."),
        ] = True,
        random_state: Annotated[int, Field(ge=0, le=2**32 - 1)] = 42,
        params: Annotated[
            dict[str, Any] | None,
            Field(
                description="Fixed hyperparameters of the family, e.g. {'n_estimators': 300}; not searched."
            ),
        ] = None,
        search_space: Annotated[
            dict[str, Any] | None,
            Field(
                description="Narrowed search ranges inside the family's bounds, e.g. "
                "{'max_depth': {'low': 4, 'high': 12}, 'max_features': ['sqrt']}."
            ),
        ] = None,
        families: Annotated[
            list[str] | None,
            Field(description="auto_* only: the families to try (default: all of the kind)."),
        ] = None,
        timeout_s: Annotated[
            float | None,
            Field(
                gt=0, description="Stop the search after this many seconds, keeping the best model so far."
            ),
        ] = None,
        trial_timeout_s: Annotated[
            float | None,
            Field(
                gt=0, description="End a trial that runs longer than this; it fails and the search goes on."
            ),
        ] = None,
        n_parallel_trials: Annotated[
            int | None,
            Field(ge=1, le=64, description="Trials at once, each in its own process; default: all CPUs."),
        ] = None,
        user_id: Annotated[str | None, Field(max_length=200, description="Who the task is for.")] = None,
        priority: Annotated[Literal["high", "normal", "low"], Field(description="Queue class.")] = "normal",
        name: Annotated[str | None, Field(max_length=200, description="A label for humans.")] = None,
        max_attempts: Annotated[
            int, Field(ge=1, le=10, description="Attempts when a worker dies unexpectedly.")
        ] = 3,
    ) -> SubmitResult:
        """Queue a training task and return its task_id at once (training runs in the background).

        The CSV is checked first: an unknown column, a one-class target, too few rows for the folds or
        text that cannot be encoded is refused with a message saying how to fix it, and no task is created.
        Follow up with get_task_status or wait_for_task."""
        spec = {
            "task_type": task_type,
            "data_source": data_source,
            "target_column": target_column,
            "feature_columns": feature_columns,
            "kernel": kernel,
            "C": C,
            "gamma": gamma,
            "degree": degree,
            "epsilon": epsilon,
            "scale_features": scale_features,
            "optimize_hyperparameters": optimize_hyperparameters,
            "n_trials": n_trials,
            "cv_folds": cv_folds,
            "scoring": scoring,
            "test_size": test_size,
            "missing_values": missing_values,
            "validate_data": validate_data,
            "random_state": random_state,
            "params": params,
            "search_space": search_space,
            "families": families,
            "timeout_s": timeout_s,
            "n_parallel_trials": n_parallel_trials,
            "trial_timeout_s": trial_timeout_s,
        }
        with tool_errors():
            view = await service_of(ctx).submit(
                {k: v for k, v in spec.items() if v is not None},
                name=name,
                user_id=user_id,
                priority=priority,
                max_attempts=max_attempts,
            )
        return submitted(view)

    @server.tool()
    async def get_search_spaces() -> SearchSpaces:
        """The model families, the hyperparameters each one tunes with their ranges, and the task types.
        Use it to choose `params` (fixed values) or `search_space` (narrowed ranges) for a submission."""
        return SearchSpaces.model_validate(describe_spaces())

    @server.tool()
    async def get_task_status(ctx: Context, task_id: TaskId) -> TaskStatusView:
        """Status of one task: status, progress percent, phase, trial i of n with the best score, elapsed and
        estimated remaining seconds; model_id and metrics once completed; a classified error if failed."""
        with tool_errors():
            return service_of(ctx).status(task_id)

    @server.tool()
    async def list_training_tasks(
        ctx: Context,
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

    @server.tool()
    async def cancel_training_task(ctx: Context, task_id: TaskId) -> TaskStatusView:
        """Cancel a queued task (it never starts) or stop a running one (its processes are ended), and
        return the resulting status. Cancelling a completed, failed or cancelled task is an error."""
        with tool_errors():
            return await service_of(ctx).cancel(task_id)

    @server.tool()
    async def get_queue_status(ctx: Context) -> QueueStatus:
        """Running and waiting counts, the concurrency limit, counts per status, and CPU, memory, disk
        and GPU use of the machine."""
        with tool_errors():
            return await service_of(ctx).queue_status()

    @server.tool()
    async def wait_for_task(
        ctx: Context,
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

    @server.tool()
    async def get_task_logs(
        ctx: Context,
        task_id: TaskId,
        tail: Annotated[int, Field(ge=1, le=5000, description="How many of the last lines.")] = 100,
    ) -> TaskLogs:
        """The last lines logged by the task's worker process (all attempts)."""
        with tool_errors():
            service = service_of(ctx)
            lines = await service.logs(task_id, tail)
            return TaskLogs(task_id=task_id, status=service.status(task_id).status.value, lines=lines)

    @server.tool()
    async def list_models(
        ctx: Context,
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

    @server.tool()
    async def get_model_info(ctx: Context, model_id: ModelId) -> ModelInfo:
        """Everything recorded about a model: best parameters, CV and held-out metrics, features and their
        types, target and classes, data file hash, library versions, timings, report files."""
        with tool_errors():
            return await service_of(ctx).model_info(model_id)

    @server.tool()
    async def get_model_report(
        ctx: Context,
        model_id: ModelId,
        plots: Annotated[
            list[str] | None,
            Field(
                description="Plots to return, e.g. ['confusion_matrix', 'roc_curve']; omit for all, [] for "
                "the summary alone. Names: optimization_history, param_importances, confusion_matrix, "
                "roc_curve, pr_curve (classification), predicted_vs_actual, residuals (regression)."
            ),
        ] = None,
    ) -> Annotated[CallToolResult, ModelReport]:
        """A model's readable summary (task, data, best parameters, metrics) and its report plots as PNG
        images: optimization history, hyperparameter importances, and the held-out confusion matrix,
        ROC and precision-recall curves (classification) or predicted-vs-actual and residuals
        (regression). The answer stays small enough for a chat; the note says what was left out."""
        with tool_errors():
            report, images = await service_of(ctx).model_report(model_id, plots)
        text = report.summary.rstrip()
        if report.note:
            text += f"\n\nNote: {report.note}"
        content: list[ContentBlock] = [TextContent(type="text", text=text)]
        for name, png in images.items():
            content.append(TextContent(type="text", text=f"{name}.png"))
            content.append(
                ImageContent(type="image", data=base64.b64encode(png).decode("ascii"), mime_type="image/png")
            )
        return CallToolResult(content=content, structured_content=report.model_dump(mode="json"))

    @server.tool()
    async def predict(
        ctx: Context,
        model_id: ModelId,
        rows: Annotated[
            list[dict[str, Any]] | None,
            Field(max_length=10_000, description="Rows as {feature: value} objects (null = missing)."),
        ] = None,
        data_source: Annotated[
            str | None, Field(description="Or a data file / sklearn:<name> holding the feature columns.")
        ] = None,
    ) -> Predictions:
        """Batch predictions, with class probabilities for classifiers that estimate them. Runs in a separate
        process; a model file whose sha256 does not match its metadata is refused."""
        with tool_errors():
            return await service_of(ctx).predict(model_id, rows=rows, data_source=data_source)

    @server.tool()
    async def delete_model(ctx: Context, model_id: ModelId) -> DeletedModel:
        """Delete a saved model's directory (model file, metadata, reports). It cannot be undone."""
        with tool_errors():
            await service_of(ctx).delete_model(model_id)
        return DeletedModel(model_id=model_id, deleted=True)

    register_finetune_tools(server)
    return server
