"""Command line: parse arguments, then serve. `mcp-trainer --help` lists the options."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from mcp.server.transport_security import TransportSecuritySettings

from mcp_trainer.service.core import DEFAULT_CONCURRENCY
from mcp_trainer.version import __version__

__all__ = ["main", "parse_args"]


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
    p.add_argument("--transport", choices=["stdio", "streamable-http"], default="stdio")
    p.add_argument("--host", default="127.0.0.1", help="HTTP only (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="HTTP only (default: 8000)")
    p.add_argument(
        "--allowed-origin",
        action="append",
        default=[],
        help="HTTP only: an extra Origin allowed by the DNS-rebinding check (repeatable)",
    )
    p.add_argument(
        "--no-execute",
        action="store_true",
        help="never run tasks in this process (submit, read and cancel only)",
    )
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument("--version", action="version", version=f"mcp-trainer {__version__}")
    args = p.parse_args(argv)
    if args.max_concurrent < 1:
        p.error("--max-concurrent must be at least 1")
    if not 0 < args.port < 65536:
        p.error("--port must be between 1 and 65535")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # stdout carries the protocol on stdio: every log line goes to stderr.
    logging.basicConfig(
        stream=sys.stderr, level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from mcp_trainer.server import ServerConfig, build_server

    server = build_server(
        ServerConfig(
            queue_dir=args.queue_dir,
            models_dir=args.models_dir,
            max_concurrent=args.max_concurrent,
            execute=not args.no_execute,
            exit_on_signal=True,
        )
    )
    try:
        if args.transport == "stdio":
            server.run()
        else:
            server.run("streamable-http", host=args.host, port=args.port, transport_security=_security(args))
    except KeyboardInterrupt:
        return 130
    return 0


def _security(args: argparse.Namespace) -> TransportSecuritySettings:
    """DNS-rebinding protection, configured explicitly: only this host and port may be named."""
    hosts = [f"{args.host}:{args.port}", f"localhost:{args.port}", f"127.0.0.1:{args.port}"]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=sorted(set(hosts)),
        allowed_origins=sorted({f"http://{h}" for h in hosts} | set(args.allowed_origin)),
    )
