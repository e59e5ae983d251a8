"""What a script reports and the environment it gets: the `mcp_trainer.report` helper (the pipe, the
printed fallback, nothing outside the queue), the worker's reading of reports into progress, and the
environment built from the task's grant."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mcp_trainer import report
from mcp_trainer.artifacts.signing import ModelSigner
from mcp_trainer.records import TaskRecord
from mcp_trainer.specs.script import ScriptSpec
from mcp_trainer.trainers.base import WorkerContext
from mcp_trainer.trainers.script.channel import Reports
from mcp_trainer.trainers.script.custodian import MARKER_VAR
from mcp_trainer.trainers.script.env import child_env


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    r, w = os.pipe()
    yield r, w
    for fd in (r, w):
        os.close(fd)


def in_queue(monkeypatch: pytest.MonkeyPatch, fd_value: str | None) -> None:
    monkeypatch.setenv(report.TASK_ID_VAR, "task_20261122T120000_0000abcd")
    if fd_value is None:
        monkeypatch.delenv(report.REPORT_FD_VAR, raising=False)
    else:
        monkeypatch.setenv(report.REPORT_FD_VAR, fd_value)


def test_outside_the_queue_the_helper_does_nothing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(report.TASK_ID_VAR, raising=False)
    report.progress(percent=50, phase="training")
    report.metric("loss", 0.5)
    report.artifact("model.pt")
    assert capsys.readouterr().out == ""


def test_in_the_queue_each_report_is_one_json_line_on_the_pipe_the_worker_passed(
    monkeypatch: pytest.MonkeyPatch, pipe: tuple[int, int]
) -> None:
    r, w = pipe
    in_queue(monkeypatch, f"{w}:{os.fstat(w).st_ino}")
    report.progress(percent=40, phase="training", message="warming up", step=4, total=10)
    report.metric("val_loss", 0.25)
    lines = os.read(r, 65536).decode().splitlines()
    assert [json.loads(line) for line in lines] == [
        {
            "type": "progress",
            "percent": 40.0,
            "phase": "training",
            "message": "warming up",
            "step": 4,
            "total": 10,
        },
        {"type": "metric", "name": "val_loss", "value": 0.25},
    ]


def test_an_fd_that_is_not_the_workers_pipe_is_never_written_and_the_report_is_printed_instead(
    monkeypatch: pytest.MonkeyPatch, pipe: tuple[int, int], capsys: pytest.CaptureFixture[str]
) -> None:
    r, w = pipe
    in_queue(monkeypatch, f"{w}:{os.fstat(w).st_ino + 1}")  # a launcher closed it; the number was reused
    report.metric("accuracy", 0.9)
    printed = capsys.readouterr().out
    assert printed == report.LINE_PREFIX + '{"type":"metric","name":"accuracy","value":0.9}\n'
    os.set_blocking(r, False)
    with pytest.raises(BlockingIOError):
        os.read(r, 10)


def test_the_helper_refuses_values_that_are_not_what_they_should_be() -> None:
    with pytest.raises(TypeError, match="percent must be a number"):
        report.progress(percent="half")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="step must be a whole number"):
        report.progress(step=-1)
    with pytest.raises(ValueError, match="name"):
        report.metric("", 1.0)


@pytest.fixture
def ctx(tmp_path: Path) -> WorkerContext:
    spec = ScriptSpec(script="/x/train.py")
    return WorkerContext(
        record=TaskRecord(task_id="task_20261122T120000_0000abcd", spec=spec),
        models_dir=tmp_path,
        work_dir=tmp_path,
        send=lambda message: None,
        stop_event=threading.Event(),
        signer=ModelSigner(tmp_path / "key"),
    )


def test_printed_reports_and_pipe_reports_become_the_tasks_progress_and_metrics(ctx: WorkerContext) -> None:
    reports = Reports(ctx)
    reports.output_line(
        report.LINE_PREFIX + '{"type": "progress", "phase": "training", "step": 3, "total": 4}'
    )
    reports.report_line('{"type": "metric", "name": "acc", "value": 0.75}')
    reports.report_line('{"type": "artifact", "path": "/runs/a/model.pt"}')
    assert ctx.progress.phase == "training"
    assert ctx.progress.percent == 75.0  # step 3 of 4, no percent given
    assert ctx.progress.message == "step 3 of 4"
    assert ctx.progress.metrics == {"acc": 0.75}
    assert reports.artifacts == ["/runs/a/model.pt"]


def test_until_it_reports_a_scripts_last_printed_line_is_its_status_message(ctx: WorkerContext) -> None:
    reports = Reports(ctx)
    reports.output_line("epoch 1/3 loss=0.9")
    assert ctx.progress.message == "epoch 1/3 loss=0.9"
    reports.report_line('{"type": "progress", "message": "from the helper"}')
    reports.output_line("epoch 2/3 loss=0.5")
    assert ctx.progress.message == "from the helper"


def test_a_report_not_understood_is_a_warning_once_and_never_stops_the_script(ctx: WorkerContext) -> None:
    reports = Reports(ctx)
    for bad in ("not json", '{"type": "nope"}', "[1, 2]", '{"type": "progress", "percent": "x"}'):
        reports.report_line(bad)
    reports.report_line('{"type": "metric", "name": "loss", "value": "nan"}')
    assert [w for w in ctx.progress.warnings if "not understood" in w] == [
        "a report from the script was not understood (it is not JSON); the task log has each"
    ]
    assert any("metric loss was not a finite number" in w for w in ctx.progress.warnings)
    assert ctx.progress.metrics == {}


def env_for(**overrides: Any) -> dict[str, str]:
    given: dict[str, Any] = {
        "base": {
            "CUDA_VISIBLE_DEVICES": "0,1",
            "OMP_NUM_THREADS": "16",
            "MCP_TRAINER_OLD": "x",
            "HOME": "/h",
        },
        "caller": {"MY_SETTING": "on"},
        "cpu_share": 3,
        "gpus": (2,),
        "task_id": "task_20261122T120000_0000abcd",
        "attempt": 2,
        "work_dir": Path("/q/work/task_20261122T120000_0000abcd"),
        "marker": "m1",
    }
    given.update(overrides)
    base, caller = given.pop("base"), given.pop("caller")
    return child_env(base, caller, **given)


def test_the_child_sees_only_its_granted_gpus_and_threads_sized_to_its_cores() -> None:
    env = env_for()
    assert env["CUDA_VISIBLE_DEVICES"] == "2"
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == env["OPENBLAS_NUM_THREADS"] == "3"
    assert env_for(gpus=(0, 3))["CUDA_VISIBLE_DEVICES"] == "0,3"
    assert env_for(gpus=())["CUDA_VISIBLE_DEVICES"] == ""  # no GPU granted: none visible


def test_the_childs_environment_keeps_the_callers_but_never_over_what_the_worker_sets() -> None:
    env = env_for(caller={"MY_SETTING": "on", "CUDA_VISIBLE_DEVICES": "0"})  # the spec refuses it anyway
    assert env["MY_SETTING"] == "on" and env["HOME"] == "/h"
    assert env["CUDA_VISIBLE_DEVICES"] == "2"
    assert "MCP_TRAINER_OLD" not in env  # the server's own MCP_TRAINER_* never leak into the script
    assert env[report.TASK_ID_VAR] == "task_20261122T120000_0000abcd"
    assert env["MCP_TRAINER_ATTEMPT"] == "2"
    assert env[MARKER_VAR] == "m1"
