"""The audit log: one JSON line per changing call in queue/audit.jsonl, naming who, what, on which task or
model, and how it ended; never a data value; appended whole by several processes at once; a write that
fails never fails the call."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
from mcp import Client
from mcp.types import Implementation

from mcp_trainer import InvalidInputError, InvalidStateError, TrainingService
from mcp_trainer.server import ServerConfig, build_server

pytestmark = pytest.mark.anyio
IRIS = {"task_type": "svm_classification", "data_source": "sklearn:iris"}
UNKNOWN_MODEL = "model_20261122T143000_8f3a2c1d"


def audit_lines(queue_dir: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (queue_dir / "audit.jsonl").read_text().splitlines()]


async def test_every_changing_call_of_the_python_api_is_one_line_with_its_actor_target_and_outcome(
    queue_dir: Path, models_dir: Path
) -> None:
    async with TrainingService(queue_dir, models_dir, execute=False) as svc:
        task = await svc.submit(IRIS, user_id="alice")
        await svc.cancel(task.task_id)
        with pytest.raises(InvalidStateError):
            await svc.cancel(task.task_id)
        with pytest.raises(InvalidStateError):
            await svc.stop(task.task_id)
        await svc.retry(task.task_id)
        with pytest.raises(InvalidInputError):
            await svc.delete_model(UNKNOWN_MODEL)
        await svc.list_tasks()  # reads are not recorded
        await svc.status(task.task_id)
    lines = audit_lines(queue_dir)
    assert [(e["call"], e.get("task_id", e.get("model_id"))) for e in lines] == [
        ("submit", task.task_id),
        ("cancel", task.task_id),
        ("cancel", task.task_id),
        ("stop", task.task_id),
        ("retry", task.task_id),
        ("delete_model", UNKNOWN_MODEL),
    ]
    assert all(e["actor"] == {"via": "python", "pid": os.getpid()} for e in lines)
    assert lines[0]["user_id"] == "alice" and lines[0]["data_source"] == "sklearn:iris"
    assert [e["outcome"] for e in lines[:2]] == ["ok", "ok"]
    assert (
        lines[2]["outcome"]
        == f"Task {task.task_id} is already cancelled; only queued or running tasks can be cancelled."
    )
    assert str(lines[3]["outcome"]).startswith(f"Task {task.task_id} is already cancelled")
    assert lines[4]["outcome"] == "ok"  # the cancelled task queued again
    assert str(lines[5]["outcome"]).startswith(f"No model {UNKNOWN_MODEL}")
    assert all(datetime.fromisoformat(str(e["time"]).replace("Z", "+00:00")).tzinfo for e in lines)
    assert str(lines[0]["time"]).endswith("Z")


async def test_a_refused_submit_is_recorded_without_the_data_values_its_error_quotes(
    queue_dir: Path, models_dir: Path, make_csv: Callable[[str, list[str], list[list[object]]], Path]
) -> None:
    rows: list[list[object]] = [[i, float(i)] for i in range(30)]
    rows[7][1] = "S3cr3t-v4lue"
    data = make_csv("prices.csv", ["size", "price"], rows)
    async with TrainingService(queue_dir, models_dir, execute=False) as svc:
        with pytest.raises(InvalidInputError) as info:
            await svc.submit(
                {"task_type": "svm_regression", "data_source": str(data), "target_column": "price"}
            )
    assert "S3cr3t-v4lue" in str(info.value)  # the caller is told which value...
    text = (queue_dir / "audit.jsonl").read_text()
    assert "S3cr3t" not in text  # ...the log is not
    (line,) = audit_lines(queue_dir)
    assert (
        line["outcome"] == "target_column '…' has non-numeric values such as '…'; regression needs numbers."
    )
    assert line["data_source"] == str(data) and line["task_id"] is None


async def test_a_tool_call_is_recorded_with_the_mcp_client_and_tool_it_came_through(
    queue_dir: Path, models_dir: Path, tmp_path: Path, mode: str
) -> None:
    server = build_server(ServerConfig(queue_dir=queue_dir, models_dir=models_dir, execute=False))
    probe = Implementation(name="audit-probe", version="7.1")
    async with Client(server, mode=mode, client_info=probe) as client:
        missing = {"model_path": str(tmp_path / "no-model"), "data_source": str(tmp_path / "no.csv")}
        refused = await client.call_tool(
            "submit_finetune_task", {"task_type": "causal_lm_finetune", **missing}
        )
        assert refused.is_error
        result = await client.call_tool("submit_training_task", {**IRIS, "user_id": "dana"})
        assert result.structured_content is not None
        task_id = result.structured_content["task_id"]
        await client.call_tool("cancel_training_task", {"task_id": task_id})
        await client.call_tool("delete_model", {"model_id": UNKNOWN_MODEL})
    lines = audit_lines(queue_dir)
    assert [e["call"] for e in lines] == ["submit", "submit", "cancel", "delete_model"]
    for e, tool in zip(
        lines,
        ["submit_finetune_task", "submit_training_task", "cancel_training_task", "delete_model"],
        strict=True,
    ):
        assert e["actor"] == {"via": "stdio", "client": "audit-probe/7.1", "tool": tool, "pid": os.getpid()}
    assert lines[1]["user_id"] == "dana" and lines[1]["task_id"] == task_id
    assert [e["outcome"] == "ok" for e in lines] == [False, True, True, False]


@pytest.fixture(params=["legacy", "auto"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_an_audit_log_that_cannot_be_written_never_fails_the_call_and_is_logged(
    queue_dir: Path, models_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text("untouched\n")
    queue_dir.mkdir()
    (queue_dir / "audit.jsonl").symlink_to(elsewhere)  # a link planted to redirect the writes
    with caplog.at_level(logging.WARNING, logger="mcp_trainer.service.audit"):
        async with TrainingService(queue_dir, models_dir, execute=False) as svc:
            task = await svc.submit(IRIS)
            assert (await svc.cancel(task.task_id)).status.value == "cancelled"
    assert elsewhere.read_text() == "untouched\n"
    warnings = [r.getMessage() for r in caplog.records if "audit log" in r.getMessage()]
    assert len(warnings) == 2 and all("not written (a symbolic link)" in w for w in warnings)
    assert '"call":"cancel"' in warnings[1]


WRITER = """
import sys
from pathlib import Path
from mcp_trainer.service.audit import AuditLog
log = AuditLog(Path(sys.argv[1]))
for i in range(400):
    log.append({"writer": sys.argv[2], "i": i, "padding": "x" * (i * 37 % 3000)})
"""


def test_lines_appended_by_several_processes_at_once_never_interleave(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(n)], env=env) for n in range(4)]
    assert [w.wait(120) for w in writers] == [0, 0, 0, 0]
    entries = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(entries) == 1600
    for n in range(4):
        assert [e["i"] for e in entries if e["writer"] == str(n)] == list(range(400))
    assert oct(path.stat().st_mode & 0o777) == oct(0o600)
