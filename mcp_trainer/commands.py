"""The command line's client commands, beside serving: submit a task or a pipeline from a JSON file, read a
task's or a pipeline's status, list, cancel, retry. They work on the queue directory directly (any number
of processes may share one) and never execute tasks: the server that owns the queue runs them.

    mcp-trainer submit pipeline.json   # {"name", "stages": [...]} or {"template", "arguments": {...}}
    mcp-trainer submit task.json       # the arguments of a submit tool: {"task_type": ..., ...}
    mcp-trainer status task_... | pipeline_...
    mcp-trainer tasks | pipelines
    mcp-trainer cancel ID | retry ID

Each prints JSON on stdout; a refusal prints its reason and what to do on stderr and exits with 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
from pydantic import BaseModel, ValidationError

from mcp_trainer.errors import InvalidInputError, TrainerError, describe_validation_error
from mcp_trainer.service.templates import template_stages
from mcp_trainer.service.training import TrainingService
from mcp_trainer.specs.options import SubmitOptions

__all__ = ["COMMANDS", "run_command"]

COMMANDS = ("submit", "status", "tasks", "pipelines", "cancel", "retry")
MAX_FILE_BYTES = 1 << 20


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mcp-trainer", description="Client commands on a queue directory.")
    p.add_argument("--queue-dir", type=Path, default=Path("queue"), help="the queue (default: ./queue)")
    p.add_argument(
        "--models-dir", type=Path, default=Path("trained_models"), help="default: ./trained_models"
    )
    p.add_argument(
        "--allow-scripts-from",
        type=Path,
        action="append",
        default=[],
        help="as the server's option: script tasks may come from this directory (repeatable)",
    )
    sub = p.add_subparsers(dest="command", required=True)
    submit = sub.add_parser("submit", help="submit a task or a pipeline described in a JSON file")
    submit.add_argument(
        "file", type=Path, help="a pipeline ({name, stages} or {template, arguments}) or a task"
    )
    for name in ("status", "cancel", "retry"):
        sub.add_parser(name, help=f"{name} a task or a pipeline").add_argument(
            "id", help="task_... or pipeline_..."
        )
    for name in ("tasks", "pipelines"):
        listing = sub.add_parser(name, help=f"list {name}, newest first")
        listing.add_argument("--status", default=None)
        listing.add_argument("--limit", type=int, default=20)
    return p


def run_command(argv: list[str]) -> int:
    """Run one client command; its exit status."""
    args = _parser().parse_args(argv)
    try:
        return anyio.run(_run, args)
    except TrainerError as exc:
        print(f"mcp-trainer: {exc.message}" + (f"\n{exc.hint}" if exc.hint else ""), file=sys.stderr)
        return 2


async def _run(args: argparse.Namespace) -> int:
    scripts = tuple(args.allow_scripts_from)
    async with TrainingService(args.queue_dir, args.models_dir, execute=False, script_dirs=scripts) as svc:
        answer = await _answer(svc, args)
        print(answer.model_dump_json(indent=2))
        if args.command in ("submit", "retry") and not (await svc.queue_status()).owner_responding:
            where = svc.queue_dir
            print(
                f"note: no server runs the queue in {where} now; its tasks start when one does.",
                file=sys.stderr,
            )
    return 0


async def _answer(svc: TrainingService, args: argparse.Namespace) -> BaseModel:
    if args.command == "submit":
        return await _submit(svc, _read_json(args.file))
    if args.command == "tasks":
        return await svc.list_tasks(status=args.status, limit=args.limit)
    if args.command == "pipelines":
        return await svc.list_pipelines(status=args.status, limit=args.limit)
    by_kind: dict[
        str, tuple[Callable[[str], Awaitable[BaseModel]], Callable[[str], Awaitable[BaseModel]]]
    ] = {
        "status": (svc.status, svc.pipeline_status),
        "cancel": (svc.cancel, svc.cancel_pipeline),
        "retry": (svc.retry, svc.retry_pipeline),
    }
    on_task, on_pipeline = by_kind[args.command]
    return await (on_pipeline if args.id.startswith("pipeline_") else on_task)(args.id)


async def _submit(svc: TrainingService, given: dict[str, Any]) -> BaseModel:
    if "stages" in given or "template" in given:
        extra = sorted(set(given) - {"name", "stages", "template", "arguments", "user_id", "priority"})
        if extra:
            raise InvalidInputError(
                f"Unknown key(s) in the pipeline file: {', '.join(extra)}.",
                "A pipeline file has name, and stages or template + arguments (user_id, priority optional).",
            )
        template = given.get("template")
        stages = template_stages(template, given.get("arguments") or {}) if template else given["stages"]
        name = given.get("name") or template or "pipeline"
        return await svc.submit_pipeline(
            name,
            stages,
            user_id=given.get("user_id"),
            priority=given.get("priority", "normal"),
            template=template,
        )
    try:
        options = SubmitOptions.model_validate(
            {k: v for k, v in given.items() if k in SubmitOptions.model_fields}
        )
    except ValidationError as exc:
        detail = describe_validation_error(exc, SubmitOptions.model_fields)
        raise InvalidInputError(f"Invalid parameters: {detail.rstrip('.?')}.") from None
    spec = {k: v for k, v in given.items() if k not in SubmitOptions.model_fields}
    view, _ = await svc.submit_once(spec, options)
    return view


def _read_json(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise InvalidInputError(f"{path} is larger than {MAX_FILE_BYTES} bytes.")
        found = json.loads(data)
    except OSError as exc:
        raise InvalidInputError(f"{path} cannot be read: {exc.strerror or exc}.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"{path} is not JSON: {exc}.", "Fix the file and submit again.") from None
    if not isinstance(found, dict):
        raise InvalidInputError(f"{path} holds a JSON {type(found).__name__}, not an object.")
    return found
