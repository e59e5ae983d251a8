"""Streamable HTTP behind a bearer token: 401 without it, a 0600 token file, no open non-loopback bind."""

from __future__ import annotations

import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from mcp_trainer.cli import parse_args
from mcp_trainer.server.http import TokenFileError, load_or_create_token

pytestmark = pytest.mark.anyio
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "test", "version": "0"},
    },
}
HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    port = free_port()
    queue = tmp_path / "queue"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mcp_trainer",
            "--transport",
            "streamable-http",
            "--port",
            str(port),
            "--queue-dir",
            str(queue),
            "--models-dir",
            str(tmp_path / "models"),
            "--no-execute",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    yield f"http://127.0.0.1:{port}/mcp", queue / ".http-token"
    proc.terminate()
    proc.wait(10)


async def test_a_request_without_the_token_gets_401_and_one_with_it_is_served(
    http_server: tuple[str, Path],
) -> None:
    url, token_file = http_server
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    token = token_file.read_text().strip()
    async with httpx2.AsyncClient(timeout=10) as http:
        for auth in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": token}):
            response = await http.post(url, json=INITIALIZE, headers={**HEADERS, **auth})
            assert response.status_code == 401
            assert "Bearer" in response.headers["www-authenticate"]
        ok = await http.post(url, json=INITIALIZE, headers={**HEADERS, "Authorization": f"Bearer {token}"})
        assert ok.status_code == 200
    bearer = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30)
    async with bearer, Client(streamable_http_client(url, http_client=bearer), mode="legacy") as client:
        result = await client.call_tool("get_queue_status", {})
        assert not result.is_error and result.structured_content is not None


def test_a_bind_beyond_loopback_needs_a_token_and_named_hosts(capsys: pytest.CaptureFixture[str]) -> None:
    http = ["--transport", "streamable-http", "--host", "0.0.0.0"]
    with pytest.raises(SystemExit):
        parse_args([*http, "--no-token", "--allowed-host", "box:8000"])
    assert "needs a token" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args(http)
    assert "--allowed-host" in capsys.readouterr().err
    assert parse_args([*http, "--allowed-host", "box:8000"]).allowed_host == ["box:8000"]
    assert parse_args(["--transport", "streamable-http", "--no-token"]).no_token  # loopback may go without


def test_a_token_file_others_can_read_or_a_link_is_refused(tmp_path: Path) -> None:
    loose = tmp_path / "loose"
    loose.write_text("a-token-of-enough-characters\n")
    loose.chmod(0o644)
    with pytest.raises(TokenFileError, match="chmod 600"):
        load_or_create_token(loose)
    link = tmp_path / "link"
    link.symlink_to(loose)
    with pytest.raises(TokenFileError, match="link"):
        load_or_create_token(link)
    made = load_or_create_token(tmp_path / "new")
    assert len(made) >= 32 and stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o600
    assert load_or_create_token(tmp_path / "new") == made
