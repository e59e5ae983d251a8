"""For the dashboard's tests: a real server over HTTP on a free loopback port, a task submitted from another
process, and Debian's chromium driven by Playwright (never a browser of Playwright's own)."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import UNGATED

MCP_TRAINER = (sys.executable, "-m", "mcp_trainer")
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    *("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"),
    *("--disable-background-networking", "--disable-component-update", "--disable-sync"),
]
# Screenshots a person can look at after a run (git-ignored).
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "dashboard"


@dataclass
class Served:
    """A running `python -m mcp_trainer --transport streamable-http`."""

    url: str  # http://127.0.0.1:PORT
    queue: Path
    models: Path
    process: subprocess.Popen[bytes]

    @property
    def token(self) -> str:
        return (self.queue / ".http-token").read_text().strip()

    def submit(self, spec: dict[str, Any]) -> str:
        """Queue a task through the command line (another process sharing the queue); its id."""
        path = self.queue.parent / f"spec-{time.monotonic_ns()}.json"
        path.write_text(json.dumps(spec))
        done = subprocess.run(
            [*MCP_TRAINER, "--queue-dir", str(self.queue), "--models-dir", str(self.models), "submit", path],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        task_id: str = json.loads(done.stdout)["task_id"]
        return task_id

    def record(self, task_id: str) -> dict[str, Any]:
        """The task's file as stored (a snapshot: written atomically, so always whole)."""
        data: dict[str, Any] = json.loads((self.queue / f"{task_id}.json").read_text())
        return data


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def http_server(tmp_path: Path, *extra: str) -> Iterator[Served]:
    """A server over HTTP that runs tasks (the machine's thresholds off: the test machine is shared)."""
    port = free_port()
    queue, models = tmp_path / "queue", tmp_path / "models"
    command = [*MCP_TRAINER, "--transport", "streamable-http", "--port", str(port)]
    command += ["--queue-dir", str(queue), "--models-dir", str(models), *UNGATED, *extra]
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115 (closed below, after the process)
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log)
    try:
        deadline = time.monotonic() + 60
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert process.poll() is None, (tmp_path / "server.log").read_text()
            assert time.monotonic() < deadline, "the server did not listen within 60 s"
            time.sleep(0.1)
        yield Served(f"http://127.0.0.1:{port}", queue, models, process)
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        log.close()


def browser_or_skip() -> Any:
    """Playwright's sync API started, or a skip that says why there is no browser to drive."""
    found = shutil.which("chromium") or (str(CHROMIUM) if CHROMIUM.exists() else None)
    if found is None:
        pytest.skip(
            "no chromium: the README's test command installs Debian's chromium (apt-get, as root); "
            "this machine could not (not root, or no apt)"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed: pip install -e '.[test]'")
    return sync_playwright, found


def screenshot(page: Any, name: str) -> Path:
    """Save what the page shows now under test-artifacts/dashboard/ for a person to look at."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
