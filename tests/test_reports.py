"""Report plots: valid small PNGs for classification and regression, get_model_report, failures kept apart."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import optuna
import pytest
from mcp import Client
from mcp_calls import call_error
from PIL import Image

from mcp_trainer import TabularSpec, TaskRecord, TaskStatus, TrainingService
from mcp_trainer.artifacts.signing import ModelSigner
from mcp_trainer.server import ServerConfig, build_server
from mcp_trainer.trainers.base import WorkerContext
from mcp_trainer.trainers.tabular import plots
from mcp_trainer.trainers.tabular import report as reports
from mcp_trainer.trainers.tabular.report import HeldOut, render_reports
from mcp_trainer.trainers.tabular.trainer import SklearnTrainer

pytestmark = pytest.mark.anyio

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CLASSIFICATION_PLOTS = [
    "optimization_history",
    "param_importances",
    "confusion_matrix",
    "roc_curve",
    "pr_curve",
    "feature_importances",
]
SMALL = {"n_trials": 4, "cv_folds": 3, "n_parallel_trials": 1}


def assert_small_valid_png(data: bytes) -> None:
    assert data.startswith(PNG_SIGNATURE)
    assert len(data) < 60_000
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        assert image.size == (640, 480)
        image.load()  # decodes every pixel: a truncated file fails here
        assert len(image.getcolors(1 << 20) or []) > 10  # something was drawn, not a blank canvas


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    """One binary, one multiclass and one multi-output regression model, trained once for this module."""
    root = tmp_path_factory.mktemp("reports")
    specs = {
        "binary": {"task_type": "svm_classification", "data_source": "sklearn:breast_cancer"},
        "multiclass": {"task_type": "knn_classification", "data_source": "sklearn:iris"},
        "regression": {
            "task_type": "ridge_regression",
            "data_source": "sklearn:linnerud",
            "target_column": ["Weight", "Waist", "Pulse"],
        },
    }

    async def train() -> dict[str, str]:
        async with TrainingService(root / "queue", root / "models", max_concurrent=3) as svc:
            ids = {
                k: (await svc.submit({"target_column": "target", **SMALL, **spec})).task_id
                for k, spec in specs.items()
            }
            await svc.drain(timeout_s=120)
            views = {k: await svc.status(task_id) for k, task_id in ids.items()}
        for key, view in views.items():
            assert view.status is TaskStatus.COMPLETED, (key, view.error)
        return {k: str(v.model_id) for k, v in views.items()}

    yield root / "models", anyio.run(train)


@pytest.fixture
async def client(trained: tuple[Path, dict[str, str]], tmp_path: Path) -> AsyncIterator[Client]:
    models_dir, _ = trained
    config = ServerConfig(queue_dir=tmp_path / "queue", models_dir=models_dir, execute=False)
    async with Client(build_server(config), mode="legacy") as c:
        yield c


def test_a_classification_model_gets_every_plot_as_a_small_valid_png(
    trained: tuple[Path, dict[str, str]],
) -> None:
    models_dir, ids = trained
    for key in ("binary", "multiclass"):
        folder = models_dir / ids[key] / "reports"
        for plot in CLASSIFICATION_PLOTS:
            assert_small_valid_png((folder / f"{plot}.png").read_bytes())
        summary = (folder / "summary.md").read_text()
        assert all(f"`{plot}.png`" in summary for plot in CLASSIFICATION_PLOTS), summary
        meta = json.loads((models_dir / ids[key] / "metadata.json").read_text())
        assert meta["plots"]["files"] == [f"{p}.png" for p in CLASSIFICATION_PLOTS]
        assert meta["plots"]["failed"] == {} and meta["timings_s"]["reports"] > 0


def test_a_regression_model_gets_its_plots_and_the_summary_says_why_one_is_missing(
    trained: tuple[Path, dict[str, str]],
) -> None:
    models_dir, ids = trained
    folder = models_dir / ids["regression"] / "reports"
    for plot in ("optimization_history", "predicted_vs_actual", "residuals"):
        assert_small_valid_png((folder / f"{plot}.png").read_bytes())
    assert not (folder / "confusion_matrix.png").exists()
    # ridge searches alpha only: importances need two parameters to compare, and the summary says so
    assert not (folder / "param_importances.png").exists()
    summary = (folder / "summary.md").read_text()
    assert "not drawn: param_importances: 1 searched parameter(s) varied (alpha)" in summary


async def test_get_model_report_returns_the_summary_and_png_images(
    client: Client, trained: tuple[Path, dict[str, str]]
) -> None:
    models_dir, ids = trained
    result = await client.call_tool("get_model_report", {"model_id": ids["binary"]})
    assert not result.is_error, result.content
    text = result.content[0]
    assert text.type == "text" and text.text.startswith(f"# {ids['binary']}")
    assert "## Held-out metrics" in text.text
    images = [b for b in result.content if b.type == "image"]
    assert [b.mime_type for b in images] == ["image/png"] * len(CLASSIFICATION_PLOTS)
    for block in images:
        assert_small_valid_png(base64.b64decode(block.data))
    structured = result.structured_content
    assert structured is not None
    assert [p["name"] for p in structured["plots"]] == CLASSIFICATION_PLOTS
    for plot in structured["plots"]:
        assert plot["included"] is True
        assert Path(plot["file"]).stat().st_size == plot["bytes"]
        assert plot["file"] == str(models_dir / ids["binary"] / "reports" / f"{plot['name']}.png")


async def test_get_model_report_returns_only_the_plots_asked_for(
    client: Client, trained: tuple[Path, dict[str, str]]
) -> None:
    _, ids = trained
    model_id = ids["multiclass"]
    result = await client.call_tool(
        "get_model_report", {"model_id": model_id, "plots": ["roc_curve", "confusion_matrix.png"]}
    )
    assert not result.is_error, result.content
    labels = [b.text for b in result.content[1:] if b.type == "text"]
    assert labels == ["roc_curve.png", "confusion_matrix.png"]  # in the order asked for
    assert sum(b.type == "image" for b in result.content) == 2
    structured = result.structured_content
    assert structured is not None
    included = {p["name"] for p in structured["plots"] if p["included"]}
    assert included == {"roc_curve", "confusion_matrix"}
    assert "Also available: optimization_history" in structured["note"]

    summary_only = await client.call_tool("get_model_report", {"model_id": model_id, "plots": []})
    assert summary_only.structured_content is not None
    assert not any(p["included"] for p in summary_only.structured_content["plots"])
    assert [b.type for b in summary_only.content if b.type != "resource_link"] == ["text"]
    assert summary_only.content[0].text.startswith(f"# {model_id}")  # type: ignore[union-attr]
    links = [str(b.uri) for b in summary_only.content if b.type == "resource_link"]
    assert links[0] == f"trainer://models/{model_id}"
    assert f"trainer://models/{model_id}/plots/roc_curve" in links  # every plot it has, as a resource


async def test_unknown_models_and_plots_are_errors_that_say_how_to_fix_them(
    client: Client, trained: tuple[Path, dict[str, str]]
) -> None:
    _, ids = trained
    unknown = await call_error(client, "get_model_report", {"model_id": "model_20200101T000000_00000000"})
    assert "No model model_20200101T000000_00000000" in unknown and "status names its model" in unknown
    malformed = await call_error(client, "get_model_report", {"model_id": "../../etc/passwd"})
    assert "is not a model id" in malformed
    bad_plot = await call_error(client, "get_model_report", {"model_id": ids["binary"], "plots": ["roc"]})
    assert "Unknown plot 'roc'" in bad_plot and "roc_curve" in bad_plot
    absent = await call_error(
        client, "get_model_report", {"model_id": ids["regression"], "plots": ["confusion_matrix"]}
    )
    assert "has no confusion_matrix plot" in absent and "predicted_vs_actual" in absent
    skipped = await call_error(
        client, "get_model_report", {"model_id": ids["regression"], "plots": ["param_importances"]}
    )
    assert "1 searched parameter(s) varied (alpha)" in skipped


async def test_plots_past_the_size_cap_are_listed_and_the_note_says_how_to_ask_for_them(
    trained: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    models_dir, ids = trained
    async with TrainingService(tmp_path / "queue", models_dir, execute=False) as svc:
        report, images = await svc.model_report(ids["binary"], max_bytes=1)
    assert list(images) == ["optimization_history"]  # the first one always comes
    left_out = CLASSIFICATION_PLOTS[1:]
    assert [p.name for p in report.plots if not p.included] == left_out
    assert report.note is not None and f"plots={left_out!r}" in report.note


async def test_a_model_from_before_reports_gets_its_summary_and_a_note(
    trained: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    models_dir, ids = trained
    old = tmp_path / "models"
    shutil.copytree(models_dir / ids["binary"], old / ids["binary"])
    for png in (old / ids["binary"] / "reports").glob("*.png"):
        png.unlink()
    meta_file = old / ids["binary"] / "metadata.json"
    meta = json.loads(meta_file.read_text())
    del meta["plots"]
    meta_file.write_text(json.dumps(meta))
    config = ServerConfig(queue_dir=tmp_path / "queue", models_dir=old, execute=False)
    async with Client(build_server(config), mode="legacy") as client:
        result = await client.call_tool("get_model_report", {"model_id": ids["binary"]})
    assert not result.is_error, result.content
    assert [b.type for b in result.content] == ["text", "resource_link"]  # the model, and no plot
    assert "trained before report plots existed" in result.content[0].text  # type: ignore[union-attr]
    assert result.structured_content is not None and result.structured_content["plots"] == []


def test_a_plot_that_fails_to_draw_never_fails_the_training_task(
    blobs_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(h: HeldOut) -> bytes:
        raise RuntimeError("the renderer broke")

    monkeypatch.setattr(plots, "roc_png", broken)
    spec = TabularSpec.model_validate(
        {"task_type": "logistic_regression", "data_source": str(blobs_csv), "target_column": "label", **SMALL}
    )
    record = TaskRecord(task_id="task_20260101T000000_0000abcd", spec=spec)
    ctx = WorkerContext(
        record=record,
        models_dir=tmp_path / "models",
        work_dir=tmp_path / "work",
        send=lambda message: None,
        stop_event=threading.Event(),
        signer=ModelSigner(tmp_path / "signing.key"),
    )
    result = SklearnTrainer().run(ctx)  # inline, in this process: the patched renderer is the one used
    folder = Path(result.model_dir) / "reports"
    assert not (folder / "confusion_matrix.png").exists()  # the plots come after the result
    ctx.run_after_result()
    assert not (folder / "roc_curve.png").exists()
    for plot in ("confusion_matrix", "pr_curve", "optimization_history"):
        assert_small_valid_png((folder / f"{plot}.png").read_bytes())
    meta = json.loads((Path(result.model_dir) / "metadata.json").read_text())
    assert meta["plots"]["failed"] == {"roc_curve": "RuntimeError: the renderer broke"}
    assert "failed: roc_curve: RuntimeError: the renderer broke" in (folder / "summary.md").read_text()


def _study(values: list[float], auto: bool = False) -> optuna.Study:
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    for value in values:
        trial = study.ask()
        family = trial.suggest_categorical("family", ["knn", "svm"]) if auto else "svm"
        prefix = f"{family}." if auto else ""
        trial.suggest_float(prefix + "C", 1e-3, 1e3, log=True)
        trial.suggest_categorical(prefix + "kernel", ["linear", "rbf"])
        study.tell(trial, value)
    return study


def _held_out(scores: Any) -> HeldOut:
    y = np.array(["a", "b", "c"] * 10)
    return HeldOut(y_true=y, y_pred=np.roll(y, 1), targets=["t"], classes=["a", "b", "c"], scores=scores)


def test_plots_that_do_not_apply_are_skipped_with_the_reason() -> None:
    no_scores = render_reports(held_out=_held_out(None), classification=True, study=_study([0.5]))
    assert set(no_scores.images) == {"confusion_matrix.png"}
    assert no_scores.skipped == {
        "optimization_history": "1 completed trial(s); the history needs at least 2",
        "param_importances": "1 completed trial(s) to compare; importances need at least 2",
        "roc_curve": "the model gives no class scores (neither decision_function nor predict_proba)",
        "pr_curve": "the model gives no class scores (neither decision_function nor predict_proba)",
    }
    no_search = render_reports(held_out=_held_out(np.eye(3)[[0, 1, 2] * 10]), classification=True)
    assert set(no_search.images) == {"confusion_matrix.png", "roc_curve.png", "pr_curve.png"}
    assert no_search.skipped["optimization_history"] == "no hyperparameter search was run"


def test_a_search_across_families_draws_its_history_and_the_best_familys_importances() -> None:
    study = _study([0.1 * (i % 7) for i in range(14)], auto=True)
    out = render_reports(held_out=_held_out(None), classification=True, study=study, auto=True, processes=1)
    assert_small_valid_png(out.images["optimization_history.png"])
    assert_small_valid_png(out.images["param_importances.png"])
    assert out.failed == {}


def test_a_drawing_process_that_dies_costs_only_its_own_plots(monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(*args: Any) -> bytes:
        os._exit(3)  # what a segfault inside matplotlib would look like to the worker

    monkeypatch.setattr(plots, "param_importances_png", crash)
    study = _study([0.1 * (i % 7) for i in range(6)])
    # Two processes share the plots round-robin: the helper draws importances and the ROC curve.
    out = render_reports(
        held_out=_held_out(np.eye(3)[[0, 1, 2] * 10]), classification=True, study=study, processes=2
    )
    why = "its drawing process ended without a result (exit code 3)"
    assert out.failed == {"param_importances": why, "roc_curve": why}
    assert set(out.images) == {"optimization_history.png", "confusion_matrix.png", "pr_curve.png"}


def test_a_broken_drawing_machinery_records_every_plot_as_failed_and_raises_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*args: Any) -> Any:
        raise OSError("no processes left")

    monkeypatch.setattr(reports, "_draw_shared", broken)
    out = render_reports(held_out=_held_out(None), classification=True)
    assert out.images == {}
    assert out.failed == dict.fromkeys(
        ["confusion_matrix", "roc_curve", "pr_curve"], "OSError: no processes left"
    )
