"""Data sources beyond CSV: TSV, JSON lines, Parquet and the datasets bundled with scikit-learn."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from mcp_trainer import InvalidInputError, TaskStatus, TrainingService
from mcp_trainer.preflight.tabular import check_dataset
from mcp_trainer.specs.sources import BUNDLED, parse_source
from mcp_trainer.specs.tabular import TabularSpec


def spec(source: str | Path, target: str | list[str] = "label", **extra: Any) -> TabularSpec:
    extra.setdefault("task_type", "svm_classification")
    extra.setdefault("cv_folds", 3)
    return TabularSpec(data_source=str(source), target_column=target, **extra)


@pytest.fixture
def frame() -> pd.DataFrame:
    rows = [
        {"x": float(i % 10), "shade": "ab"[i % 2], "label": "yes" if i % 10 >= 5 else "no"} for i in range(40)
    ]
    return pd.DataFrame(rows)


def test_sources_are_classified_by_suffix_or_bundled_prefix() -> None:
    assert parse_source("/d/a.TSV").format == "tsv"
    assert parse_source("/d/a.ndjson").format == "jsonl"
    assert parse_source("/d/a.pq").format == "parquet"
    assert parse_source("sklearn:iris").bundled == BUNDLED["iris"]
    with pytest.raises(InvalidInputError, match="sklearn:iris"):
        parse_source("sklearn:imagenet")
    with pytest.raises(InvalidInputError, match="not a supported format"):
        parse_source("/d/a.xlsx")


def test_tsv_jsonl_and_parquet_pass_the_same_checks_as_csv(tmp_path: Path, frame: pd.DataFrame) -> None:
    tsv = tmp_path / "d.tsv"
    frame.to_csv(tsv, sep="\t", index=False)
    jsonl = tmp_path / "d.jsonl"
    frame.to_json(jsonl, orient="records", lines=True)
    parquet = tmp_path / "d.parquet"
    frame.to_parquet(parquet)
    for path in (tsv, jsonl, parquet):
        summary = check_dataset(spec(path))
        assert summary.rows == 40, path
        assert summary.categorical == ["shade"], path
        assert summary.classes == ["no", "yes"], path
        with pytest.raises(InvalidInputError, match="Its columns are: x, shade, label"):
            check_dataset(spec(path, target="nope"))


def test_bad_json_lines_are_refused_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    good = [json.dumps({"x": i, "label": i % 2}) for i in range(20)]
    path.write_text("\n".join([*good[:3], "{not json", *good[3:]]) + "\n")
    with pytest.raises(InvalidInputError, match="Line 4 is not valid JSON"):
        check_dataset(spec(path))
    path.write_text("\n".join([*good[:5], json.dumps({"x": 1, "label": 0, "z": 2})]) + "\n")
    with pytest.raises(InvalidInputError, match="Line 6 has columns the first line lacks: \\['z'\\]"):
        check_dataset(spec(path))


def test_a_damaged_parquet_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "d.parquet"
    path.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(InvalidInputError, match="not a readable Parquet file"):
        check_dataset(spec(path))


def test_bundled_datasets_are_checked_without_loading_them() -> None:
    assert check_dataset(spec("sklearn:iris", target="target")).rows == 150
    with pytest.raises(InvalidInputError, match="regression dataset"):
        check_dataset(spec("sklearn:diabetes", target="target"))
    with pytest.raises(InvalidInputError, match="Weight, Waist, Pulse"):
        check_dataset(spec("sklearn:linnerud", target="target", task_type="svm_regression"))
    with pytest.raises(InvalidInputError, match="needs at least"):
        check_dataset(spec("sklearn:linnerud", target=["Weight"], task_type="svm_regression", cv_folds=15))


def test_a_bundled_dataset_predicts_its_own_target_when_target_column_is_left_out() -> None:
    iris = TabularSpec.model_validate({"task_type": "svm_classification", "data_source": "sklearn:iris"})
    assert iris.targets == ["target"]
    linnerud = TabularSpec.model_validate({"task_type": "svm_regression", "data_source": "sklearn:linnerud"})
    assert linnerud.targets == ["Weight", "Waist", "Pulse"]
    with pytest.raises(ValueError, match="target_column is required for a data file"):
        TabularSpec.model_validate({"task_type": "svm_classification", "data_source": "/data/reviews.csv"})


@pytest.mark.anyio
async def test_tasks_train_from_every_kind_of_source(tmp_path: Path, frame: pd.DataFrame) -> None:
    tsv = tmp_path / "d.tsv"
    frame.to_csv(tsv, sep="\t", index=False)
    jsonl = tmp_path / "d.jsonl"
    frame.assign(x=frame["x"].astype(object).where(frame.index != 3, None)).to_json(
        jsonl, orient="records", lines=True
    )
    parquet = tmp_path / "d.parquet"
    frame.to_parquet(parquet)
    quick = {"task_type": "svm_classification", "target_column": "label", "n_trials": 2, "cv_folds": 3}
    async with TrainingService(tmp_path / "queue", tmp_path / "models", max_concurrent=2) as svc:
        ids = [(await svc.submit({**quick, "data_source": str(p)})).task_id for p in (tsv, jsonl, parquet)]
        # A bundled dataset predicts its own target when target_column is left out; a file cannot.
        no_target = {k: v for k, v in quick.items() if k != "target_column"}
        with pytest.raises(InvalidInputError, match="target_column is required for a data file"):
            await svc.submit({**no_target, "data_source": str(tsv)})
        ids.append((await svc.submit({**no_target, "data_source": "sklearn:iris"})).task_id)
        ids.append(
            (
                await svc.submit(
                    {
                        "task_type": "svm_regression",
                        "data_source": "sklearn:linnerud",
                        "target_column": ["Weight", "Waist"],
                        "optimize_hyperparameters": False,
                        "cv_folds": 2,
                    }
                )
            ).task_id
        )
        await svc.drain(timeout_s=120)
        views = [await svc.status(t) for t in ids]
    assert [v.status for v in views] == [TaskStatus.COMPLETED] * 5, [v.error for v in views]
    iris = json.loads((tmp_path / "models" / str(views[3].model_id) / "metadata.json").read_text())
    assert iris["classes"] == ["setosa", "versicolor", "virginica"]
    assert iris["data"]["source"] == "sklearn:iris" and iris["target"] == ["target"]
    assert len(list((tmp_path / "queue").glob("task_*.json"))) == 5  # the refused submit left no file
