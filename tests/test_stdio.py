"""The real server over stdio, as Claude Desktop and MCP Inspector start it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters

pytestmark = pytest.mark.anyio


async def test_stdio_server_lists_tools_runs_a_task_and_refuses_bad_input(
    queue_dir: Path, models_dir: Path, blobs_csv: Path
) -> None:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "mcp_trainer", "--queue-dir", str(queue_dir), "--models-dir", str(models_dir)],
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
