"""Models an agent can use: list, inspect, predict (in a separate process, sha256-checked), delete."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp_calls import call, call_error

from mcp_trainer.server import ServerConfig, build_server

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
