"""Report plots are drawn after their task completes: the model predicts before they exist, the report
lists them as being drawn meanwhile, and a worker or owner killed before drawing them leaves them marked
missing, with the reason, also after a restart. Real server processes: their plots are held back by a
gate file (MCP_TRAINER_HOLD_PLOTS) until the test opens it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import UNGATED
from waiting import wait_until

from mcp_trainer import TaskStatus, TrainingService
from mcp_trainer.artifacts.model_dir import read_metadata
from mcp_trainer.artifacts.plots_state import drawing_entry, plots_in_flight

pytestmark = pytest.mark.anyio

PLOTS = ["optimization_history", "param_importances", "confusion_matrix", "roc_curve", "pr_curve"]


@pytest.fixture
def held_server(
    queue_dir: Path, models_dir: Path, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """A real server owning the queue, whose workers draw their plots only once the gate file exists."""
    gate = tmp_path / "gate"
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "mcp_trainer", "--queue-dir", str(queue_dir)),
            *("--models-dir", str(models_dir), "--max-concurrent", "1", *UNGATED),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "MCP_TRAINER_HOLD_PLOTS": str(gate)},
    )
    yield proc, gate
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            pipe.close()


async def _completed_with_plots_held(svc: TrainingService, blobs_csv: Path) -> tuple[str, str]:
    spec = {
        "task_type": "logistic_regression",
        "data_source": str(blobs_csv),
        "target_column": "label",
        "n_trials": 3,
        "cv_folds": 3,
        "n_parallel_trials": 1,
    }
    task_id = (await svc.submit(spec)).task_id

    async def completed() -> bool:
        return (await svc.status(task_id)).status is TaskStatus.COMPLETED

    await wait_until(completed, timeout=120)
    model_id = (await svc.status(task_id)).model_id
    assert model_id is not None
    return task_id, model_id


async def _predicts(svc: TrainingService, model_id: str) -> bool:
    columns = read_metadata(svc.models_dir, model_id)["features"]["names"]
    out = await svc.predict(model_id, rows=[dict.fromkeys(columns, 0.0)])
    return out.n_rows == 1 and len(out.predictions) == 1


async def test_a_search_completes_and_predicts_before_its_plots_exist_and_its_report_lists_them_as_drawing(
    queue_dir: Path, models_dir: Path, blobs_csv: Path, held_server: tuple[subprocess.Popen[bytes], Path]
) -> None:
    _, gate = held_server
    async with TrainingService(queue_dir, models_dir, execute=False) as svc:
        _, model_id = await _completed_with_plots_held(svc, blobs_csv)
        assert await _predicts(svc, model_id)

        report, images = await svc.model_report(model_id)
        assert report.plots == [] and images == {}
        assert report.being_drawn == [*PLOTS, "feature_importances"]
        assert report.note is not None and "Still being drawn" in report.note
        asked, _ = await svc.model_report(model_id, ["roc_curve"])  # never an error while it is drawn
        assert asked.being_drawn == report.being_drawn
        info = await svc.model_info(model_id)
        assert info.plots_being_drawn == report.being_drawn
        assert "pending" in info.feature_importances["permutation"]  # computed with the plots
        assert info.feature_importances["model"] is not None

        gate.touch()

        async def drawn() -> bool:
            return not (await svc.model_report(model_id))[0].being_drawn

        await wait_until(drawn)
        report, images = await svc.model_report(model_id)
        drawn = [p.name for p in report.plots]  # param_importances: skipped, too few trials
        assert {*drawn, *report.not_drawn} == {*PLOTS, "feature_importances"} and "roc_curve" in drawn
        assert set(images) == set(drawn)
        assert read_metadata(models_dir, model_id)["plots"]["state"] == "drawn"
        assert "being drawn" not in report.summary and "roc_curve.png" in report.summary
        permutation = (await svc.model_info(model_id)).feature_importances["permutation"]
        assert set(permutation["mean"]) == set(read_metadata(models_dir, model_id)["features"]["names"])
        assert "Drop in held-out" in report.summary


async def test_the_next_task_starts_while_a_completed_tasks_worker_still_draws_its_plots_on_idle_cpu_time(
    queue_dir: Path, models_dir: Path, blobs_csv: Path, held_server: tuple[subprocess.Popen[bytes], Path]
) -> None:
    async with TrainingService(queue_dir, models_dir, execute=False) as svc:  # the server runs 1 at once
        _, first = await _completed_with_plots_held(svc, blobs_csv)
        _, second = await _completed_with_plots_held(svc, blobs_csv)
        for model_id in (first, second):
            plots = read_metadata(models_dir, model_id)["plots"]
            assert plots_in_flight(plots)[0] == [*PLOTS, "feature_importances"]
            assert os.sched_getscheduler(plots["pid"]) == os.SCHED_IDLE  # idle CPU time only


async def test_a_worker_killed_after_its_result_leaves_a_completed_task_that_predicts_and_missing_plots(
    queue_dir: Path, models_dir: Path, blobs_csv: Path, held_server: tuple[subprocess.Popen[bytes], Path]
) -> None:
    async with TrainingService(queue_dir, models_dir, execute=False) as svc:
        task_id, model_id = await _completed_with_plots_held(svc, blobs_csv)
        worker = read_metadata(models_dir, model_id)["plots"]["pid"]  # the worker, still there to draw
        os.kill(worker, signal.SIGKILL)

        async def marked_by_the_owner() -> bool:
            return read_metadata(models_dir, model_id)["plots"]["state"] == "incomplete"

        await wait_until(marked_by_the_owner)
        report, _ = await svc.model_report(model_id)
        assert report.being_drawn == [] and report.plots == []
        assert set(report.not_drawn) == {*PLOTS, "feature_importances"}
        assert all("killed by signal 9" in why for why in report.not_drawn.values())
        permutation = (await svc.model_info(model_id)).feature_importances["permutation"]
        assert "killed by signal 9" in permutation["skipped"]
        assert read_metadata(models_dir, model_id)["feature_importances"]["permutation"] == permutation
        assert (await svc.status(task_id)).status is TaskStatus.COMPLETED
        assert await _predicts(svc, model_id)


async def test_an_owner_killed_while_its_worker_draws_leaves_the_plots_reported_missing_after_a_restart(
    queue_dir: Path, models_dir: Path, blobs_csv: Path, held_server: tuple[subprocess.Popen[bytes], Path]
) -> None:
    server, gate = held_server
    async with TrainingService(queue_dir, models_dir, execute=False) as reader:
        task_id, model_id = await _completed_with_plots_held(reader, blobs_csv)
        worker = read_metadata(models_dir, model_id)["plots"]["pid"]
    server.send_signal(signal.SIGKILL)  # nobody is left to mark the plots: the worker dies with its owner
    server.wait(10)
    await wait_until(lambda: not plots_in_flight(read_metadata(models_dir, model_id)["plots"])[0])
    gate.touch()  # had the worker survived, it would draw now
    async with TrainingService(queue_dir, models_dir, max_concurrent=1) as svc:  # the restart
        await wait_until(lambda: svc.is_owner)
        report, _ = await svc.model_report(model_id)
        assert report.being_drawn == [] and report.plots == []
        assert set(report.not_drawn) == {*PLOTS, "feature_importances"}
        assert all(f"pid {worker}) ended before it finished" in why for why in report.not_drawn.values())
        permutation = (await svc.model_info(model_id)).feature_importances["permutation"]
        assert f"pid {worker}) ended before it finished" in permutation["skipped"]
        assert (await svc.status(task_id)).status is TaskStatus.COMPLETED
        assert await _predicts(svc, model_id)


def test_plots_pending_in_a_process_that_is_gone_are_missing_with_the_reason() -> None:
    alive = drawing_entry(["roc_curve"], {"param_importances": "no hyperparameter search was run"})
    assert plots_in_flight(alive) == (["roc_curve"], {})  # this process is alive
    gone = {**alive, "pid_started_at": alive["pid_started_at"] - 60.0}  # the pid now names another process
    pending, missing = plots_in_flight(gone)
    assert pending == [] and "ended before it finished" in missing["roc_curve"]
