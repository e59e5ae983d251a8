"""Progress reports from workers: bounded at the source, and a malformed one never stops the scheduler."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from mcp_trainer.artifacts.signing import ModelSigner
from mcp_trainer.engine.outcome import progress_or_none
from mcp_trainer.records import TaskRecord
from mcp_trainer.specs.tabular import TabularSpec
from mcp_trainer.trainers.base import WorkerContext


def test_a_percent_past_100_is_clamped_before_it_is_sent(tmp_path: Path) -> None:
    sent: list[tuple[str, dict[str, Any]]] = []
    spec = TabularSpec(task_type="svm_classification", data_source="sklearn:iris", target_column="target")
    ctx = WorkerContext(
        record=TaskRecord(task_id="task_20261122T120000_0000abcd", spec=spec),
        models_dir=tmp_path,
        work_dir=tmp_path,
        send=sent.append,
        stop_event=threading.Event(),
        signer=ModelSigner(tmp_path / "key"),
    )
    ctx.report(percent=118.3, force=True)  # e.g. a parallel search that finished n_trials + 1 trials
    assert sent[-1][1]["percent"] == 100.0


def test_a_malformed_progress_report_is_dropped_not_raised() -> None:
    assert progress_or_none({"percent": 118.3}) is None
    assert progress_or_none({"unknown": 1}) is None
    progress = progress_or_none({"percent": 50.0, "phase": "searching"})
    assert progress is not None and progress.percent == 50.0
