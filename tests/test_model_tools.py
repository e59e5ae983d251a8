"""Models an agent can use: list, inspect, predict (in a separate process, sha256-checked), delete."""

from __future__ import annotations

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
