"""The real server over stdio, as Claude Desktop and MCP Inspector start it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from conftest import UNGATED
from mcp import Client, StdioServerParameters

pytestmark = pytest.mark.anyio


async def test_stdio_server_lists_tools_runs_a_task_and_refuses_bad_input(
    queue_dir: Path, models_dir: Path, blobs_csv: Path
) -> None:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "mcp_trainer", "--queue-dir", str(queue_dir), "--models-dir", str(models_dir), *UNGATED],
    )
    async with Client(params, mode="legacy") as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert "submit_training_task" in names and "wait_for_task" in names
        submitted = await client.call_tool(
            "submit_training_task",
            {
                "task_type": "svm_classification",
                "data_source": str(blobs_csv),
                "target_column": "label",
                "n_trials": 3,
                "cv_folds": 3,
            },
        )
        assert not submitted.is_error and submitted.structured_content is not None
        task_id = submitted.structured_content["task_id"]
        done = await client.call_tool("wait_for_task", {"task_id": task_id, "timeout_s": 45})
        assert done.structured_content is not None
        assert done.structured_content["status"] == "completed"
        bad = await client.call_tool("get_task_status", {"task_id": "nope"})
        assert bad.is_error
    assert (queue_dir / f"{task_id}.json").is_file()


def test_a_message_nested_too_deep_to_parse_gets_a_parse_error_for_its_id(tmp_path: Path) -> None:
    # The SDK's stdio transport dropped such a line: the client waited for a reply that never came.
    import json
    import select
    import subprocess

    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mcp_trainer",
            "--queue-dir",
            str(tmp_path / "q"),
            "--models-dir",
            str(tmp_path / "m"),
            "--no-execute",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdin is not None and proc.stdout is not None

    def send(line: str) -> None:
        assert proc.stdin is not None
        proc.stdin.write((line + "\n").encode())
        proc.stdin.flush()

    def reply() -> dict[str, object]:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        assert ready, "no reply"
        answer: dict[str, object] = json.loads(proc.stdout.readline())
        return answer

    try:
        hello = {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "0"},
        }
        send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": hello}))
        assert reply()["id"] == 1
        send(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        deep = "1"
        for _ in range(1000):
            deep = '{"a": ' + deep + "}"
        send(
            '{"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "predict", '
            '"arguments": {"rows": [' + deep + "]}}}"
        )
        answer = reply()
        assert answer["id"] == 7
        error = answer["error"]
        assert isinstance(error, dict) and error["code"] == -32700
        assert "nested too deeply" in str(error["message"])
    finally:
        proc.kill()
        proc.wait(10)
        proc.stdin.close()
        proc.stdout.close()
