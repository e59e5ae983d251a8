"""Command line: parse arguments, then serve. `mcp-trainer --help` lists the options."""

from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings

from mcp_trainer.commands import COMMANDS, run_command
from mcp_trainer.engine.admission import Thresholds
from mcp_trainer.engine.alerts import AlertRules
from mcp_trainer.engine.starts import DEFAULT_THRESHOLDS, AdmissionConfig
from mcp_trainer.service.caps import DEFAULT_MAX_QUEUED
from mcp_trainer.service.core import DEFAULT_CONCURRENCY
from mcp_trainer.service.maintenance import (
    DEFAULT_ARCHIVE_AFTER_DAYS,
    DEFAULT_MAINTENANCE_INTERVAL_S,
    DEFAULT_PRUNE_WORK_AFTER_DAYS,
    MAX_DAYS,
)
from mcp_trainer.version import __version__

__all__ = ["admission_of", "main", "parse_args"]

log = logging.getLogger("mcp_trainer.cli")
TOKEN_FILE = ".http-token"  # in the queue directory unless --token-file says otherwise
# A shorter interval would walk the queue's folders and the models directory for little gain.
MIN_MAINTENANCE_INTERVAL_S = 60.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="mcp-trainer",
        description="Serve the mcp-trainer MCP tools (stdio by default, or streamable HTTP).",
    )
    p.add_argument(
        "--queue-dir", type=Path, default=Path("queue"), help="task files live here (default: ./queue)"
    )
    p.add_argument(
        "--models-dir",
        type=Path,
        default=Path("trained_models"),
        help="models go here (default: ./trained_models)",
    )
    p.add_argument(
        "--max-concurrent",
        type=int,
        default=DEFAULT_CONCURRENCY,
        help=f"tasks run at once at most (default: {DEFAULT_CONCURRENCY})",
    )
    p.add_argument(
        "--max-queued",
        type=int,
        default=DEFAULT_MAX_QUEUED,
        help=f"waiting tasks at most; a submit beyond is refused (default: {DEFAULT_MAX_QUEUED})",
    )
    p.add_argument(
        "--max-queued-per-user",
        type=int,
        help="waiting tasks at most per user_id; a submit beyond is refused (default: no cap)",
    )
    p.add_argument(
        "--data-root",
        type=Path,
        action="append",
        default=[],
        help="data files must resolve (links followed) under this directory (repeatable; default: anywhere)",
    )
    p.add_argument(
        "--model-root",
        type=Path,
        action="append",
        default=[],
        help="fine-tunes' model_path must resolve under this directory (repeatable; default: anywhere)",
    )
    p.add_argument(
        "--allow-scripts-from",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="let callers run the scripts and programs in this directory as tasks (submit_script_task; "
        "repeatable; default: scripts are off). Every file in it can then be run, with any arguments",
    )
    p.add_argument("--transport", choices=["stdio", "streamable-http"], default="stdio")
    _admission_arguments(p)
    _http_arguments(p)
    _maintenance_arguments(p)
    p.add_argument(
        "--no-execute",
        action="store_true",
        help="never run tasks in this process (submit, read and cancel only)",
    )
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument("--version", action="version", version=f"mcp-trainer {__version__}")
    args = p.parse_args(argv)
    _check(p, args)
    return args


def _admission_arguments(p: argparse.ArgumentParser) -> None:
    limits = DEFAULT_THRESHOLDS
    for name, default, what in (
        ("cpu", limits.cpu_percent, "CPU use by other work"),
        ("memory", limits.memory_percent, "memory use"),
        ("disk", limits.disk_percent, "disk use (with under 20 GB free)"),
    ):
        p.add_argument(
            f"--{name}-threshold",
            type=float,
            default=default,
            metavar="PERCENT",
            help=f"start no task while {what} is above this (default: {default:g}; 100 turns it off)",
        )
    p.add_argument(
        "--reserve-after",
        type=float,
        default=AdmissionConfig().reserve_after_s,
        metavar="SECONDS",
        help="after the first task in line has waited this long for resources, nothing behind it starts "
        "before it (default: 60)",
    )
    p.add_argument(
        "--max-running-per-user", type=int, help="running tasks per user_id at most (default: no cap)"
    )
    p.add_argument(
        "--stalled-after",
        type=float,
        default=AlertRules().stalled_after_s / 60,
        metavar="MINUTES",
        help="alert on a running task that made no progress for this long (default: 10)",
    )


def admission_of(args: argparse.Namespace) -> AdmissionConfig:
    """The admission rules the command line asks for."""
    return AdmissionConfig(
        thresholds=Thresholds(
            cpu_percent=args.cpu_threshold,
            memory_percent=args.memory_threshold,
            disk_percent=args.disk_threshold,
        ),
        reserve_after_s=args.reserve_after,
        max_running_per_user=args.max_running_per_user,
    )


def _http_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="HTTP only (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="HTTP only (default: 8000)")
    p.add_argument(
        "--token-file",
        type=Path,
        help=f"HTTP only: the bearer token clients must send, created (mode 0600) if missing "
        f"(default: <queue-dir>/{TOKEN_FILE})",
    )
    p.add_argument(
        "--no-token",
        "--no-auth",
        dest="no_token",
        action="store_true",
        help="HTTP only, loopback only: accept requests without a token (any local process can call)",
    )
    p.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        help="HTTP only: a Host header allowed besides localhost and the bind address, as name:port "
        "(repeatable; needed to reach a non-loopback bind)",
    )
    p.add_argument(
        "--allowed-origin",
        action="append",
        default=[],
        help="HTTP only: an extra Origin allowed by the DNS-rebinding check (repeatable)",
    )
    p.add_argument(
        "--session-idle-timeout",
        type=float,
        default=300.0,
        help="HTTP only: seconds after which an idle MCP session is closed (default: 300)",
    )
    p.add_argument(
        "--max-sessions", type=int, default=200, help="HTTP only: open MCP sessions at most (default: 200)"
    )


def _maintenance_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--maintenance-interval",
        type=float,
        default=DEFAULT_MAINTENANCE_INTERVAL_S,
        metavar="SECONDS",
        help="run queue maintenance this often while this process runs tasks, the first time a few "
        f"minutes after start (0: never on its own; default: {DEFAULT_MAINTENANCE_INTERVAL_S:.0f})",
    )
    p.add_argument(
        "--archive-after-days",
        type=float,
        default=DEFAULT_ARCHIVE_AFTER_DAYS,
        metavar="DAYS",
        help="move tasks that ended more than this long ago to queue/archive/ "
        f"(default: {DEFAULT_ARCHIVE_AFTER_DAYS:g})",
    )
    p.add_argument(
        "--prune-work-after-days",
        type=float,
        default=DEFAULT_PRUNE_WORK_AFTER_DAYS,
        metavar="DAYS",
        help="remove the work folder (a search's study.journal) of tasks that ended more than this long "
        f"ago (default: {DEFAULT_PRUNE_WORK_AFTER_DAYS:g})",
    )


def _check_maintenance(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    interval = args.maintenance_interval
    if not math.isfinite(interval) or interval < 0 or 0 < interval < MIN_MAINTENANCE_INTERVAL_S:
        p.error(
            f"--maintenance-interval must be 0 (no periodic maintenance) or at least "
            f"{MIN_MAINTENANCE_INTERVAL_S:.0f} seconds (got {interval:g})"
        )
    for option, days in (
        ("--archive-after-days", args.archive_after_days),
        ("--prune-work-after-days", args.prune_work_after_days),
    ):
        if not (math.isfinite(days) and 0 <= days <= MAX_DAYS):
            p.error(f"{option} must be between 0 and {MAX_DAYS:.0f} (got {days:g})")
    if args.archive_after_days < args.prune_work_after_days:
        p.error(
            f"--archive-after-days ({args.archive_after_days:g}) must be at least --prune-work-after-days "
            f"({args.prune_work_after_days:g}): archiving a task removes its work folder, study included"
        )


def _check(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    from mcp_trainer.server.http import is_loopback

    if args.max_concurrent < 1:
        p.error("--max-concurrent must be at least 1")
    if args.max_queued < 1 or (args.max_queued_per_user is not None and args.max_queued_per_user < 1):
        p.error("--max-queued and --max-queued-per-user must be at least 1")
    if not 0 < args.port < 65536:
        p.error("--port must be between 1 and 65535")
    if args.transport == "streamable-http" and not is_loopback(args.host):
        if args.no_token:
            p.error(
                f"--host {args.host} is reachable from other machines: it needs a token "
                "(drop --no-token / --no-auth)"
            )
        if not args.allowed_host:
            p.error(
                f"--host {args.host}: name the Host clients will use with --allowed-host NAME:{args.port} "
                "(the DNS-rebinding check refuses any other)"
            )
    for root in [*args.data_root, *args.model_root, *args.allow_scripts_from]:
        if not root.is_dir():
            p.error(
                f"{root} is not a directory (--data-root, --model-root and --allow-scripts-from take "
                "directories)"
            )
    for name in ("cpu", "memory", "disk"):
        if not 0 < getattr(args, f"{name}_threshold") <= 100:
            p.error(f"--{name}-threshold must be a percentage above 0 and at most 100")
    if args.reserve_after < 0:
        p.error("--reserve-after must not be negative")
    if args.max_running_per_user is not None and args.max_running_per_user < 1:
        p.error("--max-running-per-user must be at least 1")
    if not 0.5 <= args.stalled_after <= 7 * 24 * 60:
        p.error("--stalled-after must be between 0.5 and 10080 minutes (a week)")
    if args.session_idle_timeout <= 0 or args.max_sessions < 1:
        p.error("--session-idle-timeout must be positive and --max-sessions at least 1")
    _check_maintenance(p, args)


_COMMAND_OPTIONS = ("--queue-dir", "--models-dir", "--allow-scripts-from")


def _is_command(given: list[str]) -> bool:
    """Whether the arguments name a client command (commands.py), after the directories if given."""
    rest = list(given)
    while len(rest) >= 2 and rest[0] in _COMMAND_OPTIONS:
        rest = rest[2:]
    while rest and rest[0].startswith(tuple(f"{o}=" for o in _COMMAND_OPTIONS)):
        rest = rest[1:]
    return bool(rest) and rest[0] in COMMANDS


def main(argv: list[str] | None = None) -> int:
    given = sys.argv[1:] if argv is None else argv
    if _is_command(given):
        logging.basicConfig(
            stream=sys.stderr, level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
        )
        return run_command(given)
    args = parse_args(argv)
    # stdout carries the protocol on stdio: every log line goes to stderr.
    logging.basicConfig(
        stream=sys.stderr, level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from mcp_trainer.artifacts.signing import ModelSigner
    from mcp_trainer.engine.layout import QueueLayout
    from mcp_trainer.secretfile import SecretFileError
    from mcp_trainer.server import ServerConfig, build_server
    from mcp_trainer.server.dashboard import DashboardWeb

    layout = QueueLayout.at(args.queue_dir)
    try:
        layout.create()
        ModelSigner(layout.signing_key).ensure()
    except (SecretFileError, OSError) as exc:
        print(f"mcp-trainer: {exc}", file=sys.stderr)
        return 2

    if args.allow_scripts_from:
        shown = ", ".join(str(d.resolve()) for d in args.allow_scripts_from)
        log.warning("script tasks are on: any caller may run the files in %s, with any arguments", shown)
    server = build_server(
        ServerConfig(
            queue_dir=args.queue_dir,
            models_dir=args.models_dir,
            max_concurrent=args.max_concurrent,
            max_queued=args.max_queued,
            max_queued_per_user=args.max_queued_per_user,
            execute=not args.no_execute,
            exit_on_signal=True,
            data_roots=tuple(args.data_root),
            model_roots=tuple(args.model_root),
            script_dirs=tuple(args.allow_scripts_from),
            admission=admission_of(args),
            alert_rules=AlertRules(stalled_after_s=args.stalled_after * 60),
            maintenance_interval_s=args.maintenance_interval or None,
            archive_after_days=args.archive_after_days,
            prune_work_after_days=args.prune_work_after_days,
        ),
        web=DashboardWeb(_security(args)) if args.transport == "streamable-http" else None,
    )
    try:
        if args.transport == "stdio":
            import anyio

            from mcp_trainer.server.stdio import run_stdio

            anyio.run(run_stdio, server)
        else:
            return _serve_http(server, args)
    except KeyboardInterrupt:
        return 130
    return 0


def _serve_http(server: MCPServer[Any], args: argparse.Namespace) -> int:
    import uvicorn

    from mcp_trainer.server.dashboard.web import PAGE_PATH
    from mcp_trainer.server.http import BearerToken, TokenFileError, ensure_token

    app = server.streamable_http_app(
        transport_security=_security(args),
        session_idle_timeout=args.session_idle_timeout,
        max_sessions=args.max_sessions,
        host=args.host,
    )
    served: Any = app
    if args.no_token:
        log.warning(
            "HTTP without a token on %s:%d: any local process can call the tools", args.host, args.port
        )
    else:
        path = args.token_file or args.queue_dir / TOKEN_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            token, generated = ensure_token(path)
        except TokenFileError as exc:
            print(f"mcp-trainer: {exc}", file=sys.stderr)
            return 2
        if generated:  # shown this once; later starts read the file and print nothing of it
            print(
                f"mcp-trainer: generated the HTTP bearer token, stored in {path} (mode 0600). It is printed "
                f"only now:\n\n    {token}\n\nClients send 'Authorization: Bearer <token>'; read it again "
                f"from that file.",
                file=sys.stderr,
            )
        log.info("HTTP clients must send 'Authorization: Bearer <token>', the token being in %s", path)
        served = BearerToken(app, token, public=[PAGE_PATH, f"{PAGE_PATH}/"])  # "/": redirected to the page
    log.info(
        "dashboard: http://%s:%d%s%s",
        _url_host(args.host),
        args.port,
        PAGE_PATH,
        "" if args.no_token else " (it asks for the token; or open it with #token=<token> at the end)",
    )
    if not (args.data_root or args.no_token):
        log.warning("no --data-root: a client with the token may name any file this server's user can read")
    uvicorn.run(served, host=args.host, port=args.port, log_level=args.log_level.lower())
    return 0


def _url_host(host: str) -> str:
    """`host` as a URL names it (an IPv6 address in brackets; any address as loopback)."""
    if host in ("0.0.0.0", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _security(args: argparse.Namespace) -> TransportSecuritySettings:
    """DNS-rebinding protection, configured explicitly: only these hosts and ports may be named."""
    hosts = [
        f"{args.host}:{args.port}",
        f"localhost:{args.port}",
        f"127.0.0.1:{args.port}",
        *args.allowed_host,
    ]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=sorted(set(hosts)),
        allowed_origins=sorted({f"http://{h}" for h in hosts} | set(args.allowed_origin)),
    )
