"""The MCP conformance suite's server scenarios that apply to this server, run against a real server over
streamable HTTP. `@modelcontextprotocol/conformance` 0.1.13 (the last release that runs on Node 20; later
ones need Node 22) is installed by the README's test command under .venv/conformance.

The other server scenarios test the suite's reference server: they call its fixture tools (test_simple_text,
json_schema_2020_12_tool, test_reconnection, ...), read its test:// resources and its test prompts, or set
a log level (this server advertises no logging): they do not apply here."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from dashboard_helpers import http_server

pytestmark = pytest.mark.conformance

SUITE = Path(sys.prefix) / "conformance" / "node_modules" / "@modelcontextprotocol" / "conformance"
SCENARIOS = [
    "server-initialize",
    "ping",
    "tools-list",
    "tools-call-error",
    "resources-list",
    "prompts-list",
    "completion-complete",
    "server-sse-multiple-streams",
    "dns-rebinding-protection",
]
_PASSED = re.compile(r"Passed: (\d+)/(\d+), (\d+) failed")


def test_the_conformance_suites_server_scenarios_that_apply_pass(tmp_path: Path) -> None:
    node = shutil.which("node")
    entry = SUITE / "dist" / "index.js"
    if node is None or not entry.is_file():
        pytest.skip(
            f"the conformance suite is not installed at {SUITE} (the README's test command installs it)"
        )
    results: dict[str, str] = {}
    with http_server(tmp_path, "--no-token", "--no-execute") as served:
        for scenario in SCENARIOS:
            run = subprocess.run(
                [node, str(entry), "server", "--url", f"{served.url}/mcp", "--scenario", scenario],
                capture_output=True,
                text=True,
                timeout=120,
            )
            found = _PASSED.search(run.stdout)
            results[scenario] = found.group(0) if found else (run.stdout + run.stderr)[-600:]
    failed = {
        s: r
        for s, r in results.items()
        if not (m := _PASSED.match(r)) or m.group(3) != "0" or m.group(1) != m.group(2)
    }
    assert failed == {}, failed
