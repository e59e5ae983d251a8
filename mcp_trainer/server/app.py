"""Building the MCP server: its configuration, its lifespan (one TrainingService), and its tools."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.subscriptions import InMemorySubscriptionBus

from mcp_trainer.engine.alerts import AlertRules
from mcp_trainer.engine.starts import AdmissionConfig
from mcp_trainer.server import (
    catalog_tools,
    finetune_tools,
    maintenance_tools,
    model_tools,
    pipeline_tools,
    prompts,
    resource_handlers,
    script_tools,
    task_tools,
    workflow_tools,
)
from mcp_trainer.server.dashboard import app as dashboard_app
from mcp_trainer.server.dashboard.web import DashboardWeb
from mcp_trainer.server.subscriptions import Subscriptions
from mcp_trainer.server.tasks_extension import TasksExtension
from mcp_trainer.service.caps import DEFAULT_MAX_QUEUED
from mcp_trainer.service.core import DEFAULT_CONCURRENCY
from mcp_trainer.service.maintenance import (
    DEFAULT_ARCHIVE_AFTER_DAYS,
    DEFAULT_MAINTENANCE_INTERVAL_S,
    DEFAULT_PRUNE_WORK_AFTER_DAYS,
)
from mcp_trainer.service.training import TrainingService
from mcp_trainer.version import __version__

__all__ = ["INSTRUCTIONS", "ServerConfig", "build_server"]

log = logging.getLogger(__name__)

INSTRUCTIONS = """\
Runs real training jobs on this machine. Training never happens inside a tool call:
1. submit_training_task returns a task_id at once; the task waits in a persistent queue.
2. Poll get_task_status (or wait_for_task, which returns within 45 s) until status is completed,
   failed or cancelled. Progress is numeric: percent, phase, trial i of n, best score, eta_s.
3. On completion the status names model_id and held-out metrics; on failure it gives a classified error
   with a hint. cancel_training_task stops a task for real. get_queue_status shows the load.
scikit-learn models: submit_training_task. PyTorch fine-tunes of a local Hugging Face model:
submit_finetune_task (GPU when there is one); then predict (classifiers) or generate (language models).
Your own training script: submit_script_task, listed when the server runs with --allow-scripts-from.
Around training: submit_preprocess_task (clean, encode, split a file), submit_evaluation_task (score and
compare models on a test file), submit_cleanup_task (remove ended tasks' intermediate files); their
status's outputs name what they made. Several steps in order (or in parallel): submit_pipeline, whose
stages take earlier stages' outputs as ${stage.output}; list_pipeline_templates has ready ones.
Paths (data_source) are paths on the machine that runs this server."""


@dataclass(frozen=True)
class ServerConfig:
    queue_dir: Path = Path("queue")
    models_dir: Path = Path("trained_models")
    max_concurrent: int = DEFAULT_CONCURRENCY
    max_queued: int | None = DEFAULT_MAX_QUEUED  # waiting tasks at most (None: no cap)
    max_queued_per_user: int | None = None  # waiting tasks per user_id at most (None: no cap)
    execute: bool = True
    # On SIGTERM/SIGINT hand running tasks back to the queue, then exit. For a process that only serves
    # (the CLI): a stdio server blocks in a read of stdin that no cancellation can interrupt.
    exit_on_signal: bool = False
    data_roots: tuple[Path, ...] = ()  # data files must resolve under one of these (none: anywhere)
    model_roots: tuple[Path, ...] = ()  # and a fine-tune's model_path under one of these
    script_dirs: tuple[Path, ...] = ()  # where script tasks may come from (none: scripts are off)
    admission: AdmissionConfig = field(default_factory=AdmissionConfig)  # what may start, and when
    alert_rules: AlertRules = field(default_factory=AlertRules)  # when a running task raises an alert
    maintenance_interval_s: float | None = DEFAULT_MAINTENANCE_INTERVAL_S  # None or 0: no periodic run
    archive_after_days: float = DEFAULT_ARCHIVE_AFTER_DAYS
    prune_work_after_days: float = DEFAULT_PRUNE_WORK_AFTER_DAYS


async def _exit_on_signal(service: TrainingService) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("%s: handing running tasks back to the queue, then exiting", signal.Signals(signum).name)
            await service.shutdown_workers()
            logging.shutdown()
            os._exit(0)


def build_server(
    config: ServerConfig | None = None, *, web: DashboardWeb | None = None
) -> MCPServer[TrainingService]:
    """The MCP server over a TrainingService built from `config` when a session starts; with `web`, its
    HTTP app also serves the dashboard page and API (server/dashboard/web.py) from that service."""
    cfg = config or ServerConfig()

    @contextlib.asynccontextmanager
    async def lifespan(_: MCPServer[TrainingService]) -> AsyncIterator[TrainingService]:
        async with TrainingService(
            cfg.queue_dir,
            cfg.models_dir,
            max_concurrent=cfg.max_concurrent,
            max_queued=cfg.max_queued,
            max_queued_per_user=cfg.max_queued_per_user,
            execute=cfg.execute,
            data_roots=cfg.data_roots,
            model_roots=cfg.model_roots,
            script_dirs=cfg.script_dirs,
            admission=cfg.admission,
            alert_rules=cfg.alert_rules,
            maintenance_interval_s=cfg.maintenance_interval_s,
            archive_after_days=cfg.archive_after_days,
            prune_work_after_days=cfg.prune_work_after_days,
        ) as service:
            with web.serving(service) if web is not None else contextlib.nullcontext():
                if not cfg.exit_on_signal:
                    yield service
                    return
                async with anyio.create_task_group() as tg:
                    tg.start_soon(_exit_on_signal, service)
                    yield service
                    tg.cancel_scope.cancel()

    bus = InMemorySubscriptionBus()
    subscriptions = Subscriptions(bus)  # who watches which trainer:// resource (subscriptions.py)

    @contextlib.asynccontextmanager
    async def watched(server: MCPServer[TrainingService]) -> AsyncIterator[TrainingService]:
        async with lifespan(server) as service, subscriptions.watching(service):
            yield service

    tools = [
        *task_tools.tools(),
        *catalog_tools.tools(),
        *model_tools.tools(),
        *finetune_tools.tools(),
        *(script_tools.tools() if cfg.script_dirs else []),
        *workflow_tools.tools(),
        *maintenance_tools.tools(),
        *pipeline_tools.tools(),
        *dashboard_app.tools(),
    ]
    server = MCPServer(
        "mcp-trainer",
        version=__version__,
        instructions=INSTRUCTIONS,
        lifespan=watched,
        tools=tools,
        subscriptions=bus,
        # Tool calls as tasks of the queue, for clients that ask; the dashboard as an MCP App.
        extensions=[TasksExtension(), dashboard_app.apps()],
    )
    resource_handlers.install(server, subscriptions)
    for prompt in prompts.prompts():
        server.add_prompt(prompt)
    if web is not None:
        web.install(server)
    return server
