"""evaluate tasks: saved models scored on a file through the queue (metrics as training computes them,
plots kept beside each model and listed by its report, a comparison naming the best), and every refusal
at submit and when the task runs. The models are trained once for the module, then copied per test."""

from __future__ import annotations

import csv
import json
import random
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import joblib
import pandas as pd
import pytest
from sklearn import metrics as skm

from mcp_trainer import InvalidInputError, TaskStatus, TrainingService
from mcp_trainer.records import ErrorKind

pytestmark = pytest.mark.anyio


def blobs(path: Path, rows: int, seed: int) -> Path:
    """x1, x2, a category, and a class (red, green, blue) that the two numbers mostly give away."""
    rng = random.Random(seed)
    centers = {"red": (0.0, 0.0), "green": (3.0, 3.0), "blue": (0.0, 4.0)}
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["x1", "x2", "shade", "label"])
        for i in range(rows):
            label = list(centers)[i % 3]
            cx, cy = centers[label]
            w.writerow(
                [round(cx + rng.gauss(0, 1.2), 3), round(cy + rng.gauss(0, 1.2), 3), rng.choice("ab"), label]
            )
    return path


def numbers(path: Path, rows: int, seed: int) -> Path:
    rng = random.Random(seed)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["a", "b", "y"])
        for _ in range(rows):
            a, b = rng.uniform(-2, 2), rng.uniform(-2, 2)
            w.writerow([round(a, 4), round(b, 4), round(2 * a - b + rng.gauss(0, 0.2), 4)])
    return path


@dataclass
class Trained:
    """A queue and its models (signed with the queue's key), and the data they were trained for."""

    root: Path
    logistic: str
    knn: str
    shade: str  # a classifier of another target (shade, from x1 and x2)
    ridge: str
    test_csv: Path
    reg_test_csv: Path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    root = tmp_path_factory.mktemp("trained")
    train, reg = blobs(root / "train.csv", 150, 0), numbers(root / "reg.csv", 100, 1)
    fixed = {"optimize_hyperparameters": False}
    specs = {
        "logistic": {"task_type": "logistic_regression", "data_source": str(train), "target_column": "label"},
        "knn": {
            "task_type": "knn_classification",
            "data_source": str(train),
            "target_column": "label",
            "params": {"n_neighbors": 40},
        },
        "shade": {
            "task_type": "knn_classification",
            "data_source": str(train),
            "target_column": "shade",
            "feature_columns": ["x1", "x2"],
        },
        "ridge": {"task_type": "ridge_regression", "data_source": str(reg), "target_column": "y"},
    }

    async def train_all() -> dict[str, str]:
        async with TrainingService(root / "queue", root / "models") as svc:
            tasks = {name: await svc.submit({**spec, **fixed}) for name, spec in specs.items()}
            done = {name: await svc.wait(t.task_id, timeout_s=120) for name, t in tasks.items()}
        assert all(d.status is TaskStatus.COMPLETED for d in done.values()), done
        return {name: str(d.model_id) for name, d in done.items()}

    ids = anyio.run(train_all)
    return Trained(
        root,
        **ids,
        test_csv=blobs(root / "test.csv", 60, 2),
        reg_test_csv=numbers(root / "reg_test.csv", 40, 3),
    )


@pytest.fixture
def dirs(trained: Trained, tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """This test's own copy of the queue and the models."""
    queue, models = tmp_path / "queue", tmp_path / "models"
    shutil.copytree(trained.root / "queue", queue, symlinks=True)
    shutil.copytree(trained.root / "models", models, symlinks=True)
    yield queue, models


def evaluation(model_ids: list[str] | str, data: Path, **fields: Any) -> dict[str, Any]:
    models = {"model_id": model_ids} if isinstance(model_ids, str) else {"model_ids": model_ids}
    return {"task_type": "evaluate", **models, "data_source": str(data), **fields}


async def test_two_classifiers_are_scored_as_training_scores_them_and_the_better_is_named_best(
    trained: Trained, dirs: tuple[Path, Path]
) -> None:
    queue, models = dirs
    async with TrainingService(queue, models) as svc:
        task = await svc.submit(evaluation([trained.knn, trained.logistic], trained.test_csv))
        done = await svc.wait(task.task_id, timeout_s=120)
    assert done.status is TaskStatus.COMPLETED, done.error
    assert done.model_id is None and done.outputs is not None
    frame = pd.read_csv(trained.test_csv)
    expected = {}
    for model_id in (trained.knn, trained.logistic):
        model = joblib.load(models / model_id / "model.pkl")
        expected[model_id] = round(
            skm.accuracy_score(frame["label"], model.predict(frame[["x1", "x2", "shade"]])), 6
        )
    best = max(expected, key=lambda m: expected[m])
    out = done.outputs
    assert out["best_model_id"] == best and out["primary_metric"] == "accuracy"
    assert [row["model_id"] for row in out["comparison"]] == sorted(expected, key=lambda m: -expected[m])
    assert {row["model_id"]: row["metrics"]["accuracy"] for row in out["comparison"]} == expected
    assert [row["rank"] for row in out["comparison"]] == [1, 2]
    assert out["comparison"][0]["n_rows"] == 60 and done.metrics == out["comparison"][0]["metrics"]
    assert set(done.metrics) == {
        "accuracy",
        "balanced_accuracy",
        "f1_macro",
        "precision_macro",
        "recall_macro",
    }
    table = pd.read_csv(out["report_path"])
    assert list(table["model_id"]) == [row["model_id"] for row in out["comparison"]]
    assert Path(out["report_path"]).parent == queue.resolve() / "datasets" / task.task_id


async def test_each_models_evaluation_plots_are_kept_beside_it_and_listed_by_its_report(
    trained: Trained, dirs: tuple[Path, Path]
) -> None:
    queue, models = dirs
    async with TrainingService(queue, models) as svc:
        task = await svc.submit(evaluation(trained.logistic, trained.test_csv))
        assert (await svc.wait(task.task_id, timeout_s=120)).status is TaskStatus.COMPLETED
        report, images = await svc.model_report(trained.logistic)
        only, picked = await svc.model_report(trained.logistic, [f"{task.task_id}/roc_curve"])
    folder = models / trained.logistic / "reports" / "evaluations" / task.task_id
    assert sorted(p.name for p in folder.iterdir()) == [
        "confusion_matrix.png",
        "evaluation.json",
        "pr_curve.png",
        "roc_curve.png",
    ]
    recorded = json.loads((folder / "evaluation.json").read_text())
    assert recorded["data_source"] == str(trained.test_csv) and recorded["target"] == ["label"]
    [listed] = report.evaluations
    assert listed.task_id == task.task_id and listed.n_rows == 60 and listed.metrics == recorded["metrics"]
    assert [p.name for p in listed.plots] == [
        f"{task.task_id}/{n}" for n in ("confusion_matrix", "roc_curve", "pr_curve")
    ]
    assert {"confusion_matrix", "roc_curve"} <= set(images)  # the model's own plots are still there
    assert f"{task.task_id}/confusion_matrix" in images
    assert list(picked) == [f"{task.task_id}/roc_curve"] and picked[f"{task.task_id}/roc_curve"].startswith(
        b"\x89PNG"
    )
    assert only.evaluations[0].plots[1].included
    with pytest.raises(InvalidInputError, match="has no plot"):
        await _report(queue, models, trained.logistic, [f"{task.task_id}/residuals"])


async def _report(queue: Path, models: Path, model_id: str, plots: list[str]) -> None:
    async with TrainingService(queue, models, execute=False) as svc:
        await svc.model_report(model_id, plots)


async def test_a_regressor_is_scored_by_r2_and_gets_the_regression_plots(
    trained: Trained, dirs: tuple[Path, Path]
) -> None:
    queue, models = dirs
    async with TrainingService(queue, models) as svc:
        task = await svc.submit(evaluation(trained.ridge, trained.reg_test_csv))
        done = await svc.wait(task.task_id, timeout_s=120)
    assert done.status is TaskStatus.COMPLETED, done.error
    assert done.outputs is not None and done.outputs["primary_metric"] == "r2"
    assert (
        done.metrics is not None and set(done.metrics) == {"r2", "mae", "rmse"} and done.metrics["r2"] > 0.9
    )
    folder = models / trained.ridge / "reports" / "evaluations" / task.task_id
    assert {p.name for p in folder.glob("*.png")} == {"predicted_vs_actual.png", "residuals.png"}


async def test_rows_without_a_true_value_are_left_out_and_the_status_says_so(
    trained: Trained, dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    frame = pd.read_csv(trained.test_csv)
    frame.loc[:4, "label"] = None
    holes = tmp_path / "holes.csv"
    frame.to_csv(holes, index=False)
    async with TrainingService(*dirs) as svc:
        done = await svc.wait((await svc.submit(evaluation(trained.knn, holes))).task_id, timeout_s=120)
    assert done.status is TaskStatus.COMPLETED and done.outputs is not None
    assert done.outputs["comparison"][0]["n_rows"] == 55
    assert "5 row(s) of holes.csv have no true value and were not scored" in done.warnings


# -- refusals ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("which", "fields", "words"),
    [
        ([], {"model_id": "model_20261122T143000_8f3a2c1d"}, "No model model_20261122T143000_8f3a2c1d."),
        (["knn", "ridge"], {}, "mix classifiers and regressors"),
        (["knn", "shade"], {}, "The models predict different targets"),
        (["knn"], {"target_column": "colour"}, "The column(s) of true values ['colour'] are not in test.csv"),
        (["shade"], {"model_ids": None, "model_id": "model_x"}, "'model_x' is not a model id"),
        (["knn"], {"model_id": "model_20261122T143000_8f3a2c1d"}, "give model_id (one model) or model_ids"),
    ],
)
async def test_models_that_cannot_be_scored_together_are_refused_at_submit(
    trained: Trained, dirs: tuple[Path, Path], which: list[str], fields: dict[str, Any], words: str
) -> None:
    spec = {**evaluation([getattr(trained, name) for name in which], trained.test_csv), **fields}
    if not which:
        del spec["model_ids"]
    async with TrainingService(*dirs, execute=False) as svc:
        with pytest.raises(InvalidInputError) as info:
            await svc.submit({k: v for k, v in spec.items() if v is not None})
        assert words in str(info.value)
        assert (await svc.list_tasks(task_type="evaluate")).total == 0


async def test_data_lacking_a_column_a_model_needs_is_refused_naming_the_model_and_the_column(
    trained: Trained, dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    partial = tmp_path / "partial.csv"
    pd.read_csv(trained.test_csv).drop(columns=["shade"]).to_csv(partial, index=False)
    async with TrainingService(*dirs, execute=False) as svc:
        with pytest.raises(InvalidInputError) as info:
            await svc.submit(evaluation([trained.shade, trained.knn], partial, target_column="label"))
    assert f"partial.csv lacks column(s) model {trained.knn} needs: shade." in str(info.value)


async def test_a_deleted_model_is_refused_saying_it_was_deleted(
    trained: Trained, dirs: tuple[Path, Path]
) -> None:
    async with TrainingService(*dirs, execute=False) as svc:
        await svc.delete_model(trained.knn)
        with pytest.raises(InvalidInputError) as info:
            await svc.submit(evaluation([trained.logistic, trained.knn], trained.test_csv))
    assert f"Model {trained.knn} was deleted (delete_model, " in str(info.value)


async def test_a_fine_tuned_model_is_refused_clearly(trained: Trained, dirs: tuple[Path, Path]) -> None:
    queue, models = dirs
    finetuned = "model_20261122T143000_8f3a2c1d"
    (models / finetuned).mkdir()
    meta = {"model_id": finetuned, "task_type": "text_classification_finetune", "target": ["label"]}
    (models / finetuned / "metadata.json").write_text(json.dumps(meta))
    async with TrainingService(queue, models, execute=False) as svc:
        with pytest.raises(InvalidInputError) as info:
            await svc.submit(evaluation(finetuned, trained.test_csv))
    assert (
        "is a text_classification_finetune model; evaluate tasks score tabular (scikit-learn) models only"
        in str(info.value)
    )


async def test_a_model_deleted_after_the_submit_fails_the_task_as_a_data_error(
    trained: Trained, dirs: tuple[Path, Path]
) -> None:
    queue, models = dirs
    async with TrainingService(queue, models, execute=False) as svc:
        task = await svc.submit(evaluation([trained.logistic, trained.knn], trained.test_csv))
        await svc.delete_model(trained.knn)
    async with TrainingService(queue, models) as svc:
        done = await svc.wait(task.task_id, timeout_s=120)
    assert done.status is TaskStatus.FAILED and done.error is not None
    assert done.error.kind is ErrorKind.DATA_ERROR and f"No model {trained.knn}" in done.error.message


async def test_the_template_pipelines_stages_submitted_in_turn_split_train_three_families_and_name_the_best(
    queue_dir: Path, models_dir: Path, blobs_csv: Path
) -> None:
    async with TrainingService(queue_dir, models_dir) as svc:
        prep = await svc.submit(
            {
                "task_type": "preprocess",
                "data_source": str(blobs_csv),
                "target_column": "label",
                "test_size": 0.3,
            }
        )
        outputs = (await svc.wait(prep.task_id, timeout_s=60)).outputs
        assert outputs is not None
        families = ("logistic_regression", "knn_classification", "random_forest_classification")
        tasks = [
            await svc.submit(
                {
                    "task_type": family,
                    "data_source": outputs["train_path"],
                    "target_column": "label",
                    "optimize_hyperparameters": False,
                }
            )
            for family in families
        ]
        models = [(await svc.wait(t.task_id, timeout_s=120)).model_id for t in tasks]
        assert all(models)
        judged = await svc.submit(
            {"task_type": "evaluate", "model_ids": models, "data_source": outputs["test_path"]}
        )
        done = await svc.wait(judged.task_id, timeout_s=120)
    assert done.status is TaskStatus.COMPLETED and done.outputs is not None
    assert done.outputs["best_model_id"] in models
    assert sorted(row["task_type"] for row in done.outputs["comparison"]) == sorted(families)
    assert all(row["n_rows"] == 36 for row in done.outputs["comparison"])  # the 30% held back of 120
