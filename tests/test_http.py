"""Streamable HTTP behind a bearer token: 401 without it, 403 from a foreign Origin, a 0600 token file
printed once when generated, no open non-loopback bind, and each call audited with the client's address."""

from __future__ import annotations

import json
import logging
import re
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx2
import pytest
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import Implementation

from mcp_trainer.cli import main, parse_args
from mcp_trainer.server.http import BearerToken, TokenFileError, load_or_create_token

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
def start_http_server(tmp_path: Path) -> Iterator[Callable[..., tuple[str, Path]]]:
    """Start `python -m mcp_trainer` over HTTP (with `extra` arguments); gives its URL and token file."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(*extra: str) -> tuple[str, Path]:
        port = free_port()
        queue = tmp_path / "queue"
        command = [sys.executable, "-m", "mcp_trainer", "--transport", "streamable-http", "--port", str(port)]
        command += ["--queue-dir", str(queue), "--models-dir", str(tmp_path / "models"), "--no-execute"]
        procs.append(
            subprocess.Popen([*command, *extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        return f"http://127.0.0.1:{port}/mcp", queue / ".http-token"

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def http_server(start_http_server: Callable[..., tuple[str, Path]]) -> tuple[str, Path]:
    return start_http_server()


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


async def test_a_request_from_a_foreign_origin_gets_403_even_with_the_token(
    http_server: tuple[str, Path],
) -> None:
    url, token_file = http_server
    auth = {**HEADERS, "Authorization": f"Bearer {token_file.read_text().strip()}"}
    port = url.split(":")[2].split("/")[0]
    async with httpx2.AsyncClient(timeout=10) as http:
        foreign = await http.post(url, json=INITIALIZE, headers={**auth, "Origin": "http://evil.example"})
        assert foreign.status_code == 403
        local = await http.post(url, json=INITIALIZE, headers={**auth, "Origin": f"http://127.0.0.1:{port}"})
        assert local.status_code == 200


async def test_over_http_a_data_file_outside_the_data_root_is_refused_in_words_and_calls_are_audited(
    start_http_server: Callable[..., tuple[str, Path]], tmp_path: Path, blobs_csv: Path
) -> None:
    root = tmp_path / "data"
    root.mkdir()
    inside = root / "blobs.csv"
    inside.write_bytes(blobs_csv.read_bytes())
    url, token_file = start_http_server("--data-root", str(root))
    spec = {"task_type": "svm_classification", "target_column": "label"}
    for mode in ("legacy", "auto"):
        bearer = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token_file.read_text().strip()}"})
        probe = Implementation(name=f"probe-{mode}", version="2.0")
        transport = streamable_http_client(url, http_client=bearer)
        async with bearer, Client(transport, mode=mode, client_info=probe) as client:
            refused = await client.call_tool("submit_training_task", {**spec, "data_source": str(blobs_csv)})
            assert refused.is_error
            text = refused.content[0].text  # type: ignore[union-attr]
            assert f"data_source '{blobs_csv}' is outside the directories this server may read" in text
            assert f"Use a path under {root}" in text
            accepted = await client.call_tool("submit_training_task", {**spec, "data_source": str(inside)})
            assert not accepted.is_error
    lines = [json.loads(line) for line in (token_file.parent / "audit.jsonl").read_text().splitlines()]
    assert [(e["data_source"], e["outcome"] == "ok") for e in lines] == [
        (str(blobs_csv), False),
        (str(inside), True),
    ] * 2
    assert lines[0]["outcome"].startswith("data_source '…' is outside the directories this server may read")
    assert [e["actor"]["client"] for e in lines] == ["probe-legacy/2.0"] * 2 + ["probe-auto/2.0"] * 2
    for e in lines:
        assert e["actor"]["via"] == "http" and e["actor"]["tool"] == "submit_training_task"
        assert re.fullmatch(r"127\.0\.0\.1:\d+", e["actor"]["address"])


def http_argv(tmp_path: Path, *extra: str) -> list[str]:
    dirs = ["--queue-dir", str(tmp_path / "queue"), "--models-dir", str(tmp_path / "models")]
    return ["--transport", "streamable-http", *dirs, *extra]


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The ASGI apps `main` would serve; uvicorn is not started."""
    apps: list[object] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **_: apps.append(app))
    return apps


def test_a_generated_token_is_printed_once_to_stderr_with_the_file_it_is_stored_in(
    tmp_path: Path, served: list[object], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(http_argv(tmp_path)) == 0
    token_file = tmp_path / "queue" / ".http-token"
    token = token_file.read_text().strip()
    first = capsys.readouterr().err
    assert token in first and f"stored in {token_file}" in first
    assert main(http_argv(tmp_path)) == 0  # a later start reads the file and prints nothing of it
    assert token not in capsys.readouterr().err
    assert main(http_argv(tmp_path, "--token-file", str(tmp_path / "elsewhere"))) == 0
    assert f"stored in {tmp_path / 'elsewhere'}" in capsys.readouterr().err
    assert len(served) == 3 and all(isinstance(app, BearerToken) for app in served)


def test_no_auth_is_no_token_loopback_only_with_a_warning(
    tmp_path: Path, served: list[object], capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    beyond = ["--host", "0.0.0.0", "--allowed-host", "box:8000", "--no-auth"]
    with pytest.raises(SystemExit):
        parse_args(http_argv(tmp_path, *beyond))
    assert "needs a token" in capsys.readouterr().err
    assert parse_args(http_argv(tmp_path, "--no-auth")).no_token
    with caplog.at_level(logging.WARNING, logger="mcp_trainer.cli"):
        assert main(http_argv(tmp_path, "--no-auth")) == 0
    assert "HTTP without a token on 127.0.0.1:8000: any local process can call the tools" in caplog.text
    assert len(served) == 1 and not isinstance(served[0], BearerToken)
    assert not (tmp_path / "queue" / ".http-token").exists()
