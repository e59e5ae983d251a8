"""Models an agent can use: list, inspect, predict (in a separate process, sha256-checked), delete."""

from __future__ import annotations

import hashlib
import json
import pickle
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp_calls import call, call_error

from mcp_trainer.errors import InvalidInputError
from mcp_trainer.server import ServerConfig, build_server
from mcp_trainer.service.models import MAX_PREDICT_ROWS
from mcp_trainer.trainers.tabular.predict import predict

pytestmark = pytest.mark.anyio


@pytest.fixture
async def client(queue_dir: Path, models_dir: Path) -> AsyncIterator[Client]:
    server = build_server(ServerConfig(queue_dir=queue_dir, models_dir=models_dir))
    async with Client(server, mode="legacy") as c:
        yield c


async def train(client: Client, **spec: Any) -> str:
    task = await call(client, "submit_training_task", {"n_trials": 2, "cv_folds": 3, **spec})
    done = await call(client, "wait_for_task", {"task_id": task["task_id"], "timeout_s": 45})
    assert done["status"] == "completed", done
    model_id: str = done["model_id"]
    return model_id


async def test_a_trained_model_is_listed_described_used_and_deleted(
    client: Client, blobs_csv: Path, models_dir: Path
) -> None:
    model_id = await train(
        client,
        task_type="logistic_regression",
        data_source=str(blobs_csv),
        target_column="label",
        user_id="ann",
    )
    listed = await call(client, "list_models", {"user_id": "ann"})
    assert [m["model_id"] for m in listed["models"]] == [model_id]
    assert listed["models"][0]["family"] == "logistic"

    info = await call(client, "get_model_info", {"model_id": model_id})
    assert info["classes"] == ["blue", "green", "red"]
    assert info["features"]["types"]["shade"] == "categorical"
    assert "summary.md" in info["reports"] and len(info["model_sha256"]) == 64

    rows = [{"x1": 0.1, "x2": -0.2, "shade": "a"}, {"x1": 3.1, "x2": 2.9, "shade": "b"}]
    out = await call(client, "predict", {"model_id": model_id, "rows": rows})
    assert out["predictions"] == ["red", "green"]
    assert out["classes"] == ["blue", "green", "red"]
    assert len(out["probabilities"]) == 2 and all(abs(sum(p) - 1) < 1e-4 for p in out["probabilities"])

    from_file = await call(client, "predict", {"model_id": model_id, "data_source": str(blobs_csv)})
    assert from_file["n_rows"] == 120

    assert (await call(client, "delete_model", {"model_id": model_id}))["deleted"] is True
    assert not (models_dir / model_id).exists()
    assert "No model" in await call_error(client, "get_model_info", {"model_id": model_id})


async def test_bad_prediction_input_is_refused_with_the_reason(client: Client, blobs_csv: Path) -> None:
    model_id = await train(
        client, task_type="knn_classification", data_source=str(blobs_csv), target_column="label"
    )
    good = {"x1": 0.0, "x2": 0.0, "shade": "a"}
    cases = [
        ({"rows": [{"x1": 0.0, "shade": "a"}]}, "Missing feature columns: ['x2']"),
        ({"rows": [{**good, "colour": 1}]}, "columns the model was not trained on: ['colour']"),
        ({"rows": [{**good, "x1": "tall"}]}, "Feature 'x1' must be numeric"),
        ({"rows": []}, "rows is empty"),
        ({}, "either rows or data_source"),
        ({"data_source": "/nonexistent/x.csv"}, "does not exist"),
    ]
    for args, expected in cases:
        assert expected in await call_error(client, "predict", {"model_id": model_id, **args}), args
    assert "not a model id" in await call_error(client, "predict", {"model_id": "../../etc", "rows": [good]})
    assert "No model" in await call_error(
        client, "predict", {"model_id": "model_20200101T000000_00000000", "rows": [good]}
    )


async def test_a_tampered_model_file_is_never_loaded(
    client: Client, blobs_csv: Path, models_dir: Path
) -> None:
    model_id = await train(
        client, task_type="svm_classification", data_source=str(blobs_csv), target_column="label"
    )
    model_file = models_dir / model_id / "model.pkl"
    model_file.write_bytes(model_file.read_bytes() + b"\x00")
    message = await call_error(
        client, "predict", {"model_id": model_id, "rows": [{"x1": 0, "x2": 0, "shade": "a"}]}
    )
    assert "does not match the sha256" in message


async def test_regression_models_predict_every_target(client: Client, regression_csv: Path) -> None:
    model_id = await train(
        client, task_type="ridge_regression", data_source=str(regression_csv), target_column=["y1", "y2"]
    )
    out = await call(client, "predict", {"model_id": model_id, "rows": [{"a": 1.0, "b": 0.5}]})
    (y1, y2) = out["predictions"][0]
    assert y1 == pytest.approx(1.5, abs=0.3) and y2 == pytest.approx(1.5, abs=0.3)
    assert out["probabilities"] is None


async def test_a_category_never_seen_in_training_is_predicted_with_a_note_for_its_row(
    client: Client, blobs_csv: Path
) -> None:
    model_id = await train(
        client, task_type="logistic_regression", data_source=str(blobs_csv), target_column="label"
    )
    rows = [{"x1": 0.1, "x2": -0.2, "shade": "a"}, {"x1": 3.1, "x2": 2.9, "shade": "purple"}]
    out = await call(client, "predict", {"model_id": model_id, "rows": rows})
    assert len(out["predictions"]) == 2
    assert out["notes"] == [
        {
            "row": 1,
            "column": "shade",
            "value": "purple",
            "note": "a category not seen in training; predicted as if it were missing",
        }
    ]


async def test_a_deleted_models_task_says_its_model_was_deleted(client: Client, blobs_csv: Path) -> None:
    task = await call(
        client,
        "submit_training_task",
        {
            "task_type": "logistic_regression",
            "data_source": str(blobs_csv),
            "target_column": "label",
            "n_trials": 2,
            "cv_folds": 3,
        },
    )
    done = await call(client, "wait_for_task", {"task_id": task["task_id"], "timeout_s": 45})
    assert done["model_deleted"] is False
    await call(client, "delete_model", {"model_id": done["model_id"]})
    status = await call(client, "get_task_status", {"task_id": task["task_id"]})
    assert status["status"] == "completed" and status["model_id"] == done["model_id"]
    assert status["model_deleted"] is True


async def test_the_report_carries_its_summary_once_and_an_auto_summary_names_the_winning_family(
    client: Client, blobs_csv: Path
) -> None:
    model_id = await train(
        client,
        task_type="auto_classification",
        data_source=str(blobs_csv),
        target_column="label",
        families=["logistic", "knn"],
    )
    result = await client.call_tool("get_model_report", {"model_id": model_id, "plots": []})
    assert not result.is_error and result.structured_content is not None
    text = result.content[0].text  # type: ignore[union-attr]
    assert text.count("## Held-out metrics") == 1
    assert "summary" not in result.structured_content
    info = await call(client, "get_model_info", {"model_id": model_id})
    assert info["family"] in ("logistic", "knn")
    assert f"- Best family: {info['family']}" in text


async def test_predict_refuses_rows_without_text_for_a_fine_tune_before_starting_any_job(
    client: Client, models_dir: Path
) -> None:
    # A text classifier's rows are checked in the server: an error took 10.9 s, the time to import torch.
    model_id = "model_20261122T143000_8f3a2c1d"
    (models_dir / model_id).mkdir(parents=True)
    meta = {
        "model_id": model_id,
        "task_type": "text_classification_finetune",
        "features": {"names": ["review"]},
    }
    (models_dir / model_id / "metadata.json").write_text(json.dumps(meta))
    started = time.monotonic()
    message = await call_error(client, "predict", {"model_id": model_id, "rows": [{"text": "great film"}]})
    assert "Row 0 has no text in 'review', the column this model reads" in message
    assert time.monotonic() - started < 2


class _Marker:
    """A pickle that, when loaded, creates a file: code run on load."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (Path.touch, (str(self.path),))  # type: ignore[return-value]


def _plant(models_dir: Path, model_id: str, marker: Path, *, name: str = "model.pkl") -> dict[str, Any]:
    """Replace a model's pickle with one that runs code, and rewrite its sha256 (as anyone who can write
    trained_models/ can); returns the metadata as rewritten."""
    folder = models_dir / model_id
    target = (folder / name).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(pickle.dumps(_Marker(marker)))
    meta = json.loads((folder / "metadata.json").read_text())
    meta["model_file"] = name
    meta["model_sha256"] = hashlib.sha256(target.read_bytes()).hexdigest()
    (folder / "metadata.json").write_text(json.dumps(meta))
    return meta


@pytest.mark.parametrize("how", ["replaced", "outside", "unsigned"])
async def test_a_model_file_written_by_someone_else_never_runs_code_through_predict(
    client: Client, blobs_csv: Path, models_dir: Path, tmp_path: Path, how: str
) -> None:
    model_id = await train(
        client, task_type="logistic_regression", data_source=str(blobs_csv), target_column="label"
    )
    marker = tmp_path / "code_ran"
    meta = _plant(models_dir, model_id, marker, name="../../evil.pkl" if how == "outside" else "model.pkl")
    if how == "unsigned":
        del meta["signature"]
        (models_dir / model_id / "metadata.json").write_text(json.dumps(meta))
    message = await call_error(
        client, "predict", {"model_id": model_id, "rows": [{"x1": 0, "x2": 0, "shade": "a"}]}
    )
    expected = {
        "replaced": "signature does not verify",
        "outside": "outside its directory",
        "unsigned": "is not signed",
    }[how]
    assert expected in message
    assert not marker.exists()


async def test_missing_nan_and_infinite_inputs_are_imputed_or_refused_in_words(
    client: Client, blobs_csv: Path, queue_dir: Path, models_dir: Path
) -> None:
    # null (and NaN) mean missing: filled with the training median, although the training data had none.
    model_id = await train(
        client, task_type="svm_classification", data_source=str(blobs_csv), target_column="label"
    )
    rows = [{"x1": None, "x2": 0.0, "shade": "a"}, {"x1": float("nan"), "x2": None, "shade": None}]
    out = await call(client, "predict", {"model_id": model_id, "rows": rows})
    assert len(out["predictions"]) == 2
    # JSON has no infinity (the transport turns it into null); the Python API can pass one, and a data
    # file can hold one ("inf").
    key = str(queue_dir / ".model-signing-key")
    for value in (float("inf"), float("-inf"), "-inf"):
        rows = [{"x1": 0.0, "x2": 0.0, "shade": "a"}, {"x1": value, "x2": 0.0, "shade": "a"}]
        with pytest.raises(InvalidInputError, match="Feature 'x1' is infinite in row 1"):
            predict(str(models_dir), model_id, rows, None, key)


async def test_predict_reads_no_more_of_a_data_file_than_the_rows_it_may_predict(
    client: Client, blobs_csv: Path, tmp_path: Path
) -> None:
    model_id = await train(
        client, task_type="logistic_regression", data_source=str(blobs_csv), target_column="label"
    )
    big = tmp_path / "big.csv"
    with big.open("w") as f:
        f.write("x1,x2,shade\n")
        f.writelines("0.1,0.2,a\n" for _ in range(MAX_PREDICT_ROWS + 1))
        f.write("not,a,row,at,all\n" * 3)  # past the limit: never parsed (it would be a CSV error)
    message = await call_error(client, "predict", {"model_id": model_id, "data_source": str(big)})
    assert f"more than the {MAX_PREDICT_ROWS} rows one call predicts" in message
