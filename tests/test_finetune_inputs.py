"""Bad fine-tune input is refused before a task exists, with a message that says how to fix it."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
import torch
from mcp import Client
from mcp_calls import call, call_error
from tiny_models import lm_csv, make_bert, make_gpt2, sentiment_csv

from mcp_trainer import InvalidInputError, TrainingService
from mcp_trainer.server import ServerConfig, build_server
from mcp_trainer.specs.finetune import FinetuneSpec

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def hf_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf")
    torch.manual_seed(0)
    return {
        "bert": make_bert(root / "bert"),
        "gpt2": make_gpt2(root / "gpt2"),
        "head3": make_bert(root / "head3", num_labels=3, id2label={0: "a", 1: "b", 2: "c"}),
    }


def spec(model: Path, data: Path, **extra: Any) -> dict[str, Any]:
    return {
        "task_type": "text_classification_finetune",
        "model_path": str(model),
        "data_source": str(data),
        **extra,
    }


async def refused(queue_dir: Path, models_dir: Path, task: dict[str, Any]) -> str:
    async with TrainingService(queue_dir, models_dir, execute=False) as svc:
        with pytest.raises(InvalidInputError) as info:
            await svc.submit(task)
        assert (await svc.list_tasks()).total == 0  # nothing was queued
    return str(info.value)


def write(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


async def test_a_missing_model_directory_is_refused(
    queue_dir: Path, models_dir: Path, tmp_path: Path
) -> None:
    data = sentiment_csv(tmp_path / "d.csv")
    message = await refused(queue_dir, models_dir, spec(tmp_path / "nowhere", data))
    assert "does not exist" in message and "save_pretrained" in message


async def test_a_directory_that_is_not_a_model_is_refused(
    queue_dir: Path, models_dir: Path, tmp_path: Path
) -> None:
    (tmp_path / "empty").mkdir()
    data = sentiment_csv(tmp_path / "d.csv")
    message = await refused(queue_dir, models_dir, spec(tmp_path / "empty", data))
    assert "no config.json" in message


async def test_a_model_directory_without_weights_is_refused(
    queue_dir: Path, models_dir: Path, tmp_path: Path, hf_models: dict[str, Path]
) -> None:
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.json").write_text((hf_models["bert"] / "config.json").read_text())
    message = await refused(queue_dir, models_dir, spec(bare, sentiment_csv(tmp_path / "d.csv")))
    assert "no weights" in message


async def test_a_missing_text_column_is_refused_naming_the_columns(
    queue_dir: Path, models_dir: Path, tmp_path: Path, hf_models: dict[str, Path]
) -> None:
    data = sentiment_csv(tmp_path / "d.csv")
    message = await refused(queue_dir, models_dir, spec(hf_models["bert"], data, text_column="review"))
    assert "'review' is not in d.csv" in message and "text, label" in message


async def test_an_empty_dataset_is_refused(
    queue_dir: Path, models_dir: Path, tmp_path: Path, hf_models: dict[str, Path]
) -> None:
    data = write(tmp_path / "d.csv", ["text", "label"], [["", "pos"], ["  ", "neg"]])
    message = await refused(queue_dir, models_dir, spec(hf_models["bert"], data))
    assert "has no examples" in message


async def test_labels_that_do_not_match_the_models_head_are_refused(
    queue_dir: Path, models_dir: Path, tmp_path: Path, hf_models: dict[str, Path]
) -> None:
    data = sentiment_csv(tmp_path / "d.csv")  # labels neg/pos; the head knows a, b, c
    message = await refused(queue_dir, models_dir, spec(hf_models["head3"], data))
    assert "do not match the model's classification head" in message and "replace_head" in message


async def test_replace_head_accepts_a_model_whose_head_has_other_labels(
    queue_dir: Path, models_dir: Path, tmp_path: Path, hf_models: dict[str, Path]
) -> None:
    data = sentiment_csv(tmp_path / "d.csv")
    async with TrainingService(queue_dir, models_dir, execute=False) as svc:
        view = await svc.submit(spec(hf_models["head3"], data, replace_head=True))
        assert view.status.value == "queued"


async def test_a_single_label_is_refused(
    queue_dir: Path, models_dir: Path, tmp_path: Path, hf_models: dict[str, Path]
) -> None:
    data = write(tmp_path / "d.csv", ["text", "label"], [["good film", "pos"]] * 10)
    message = await refused(queue_dir, models_dir, spec(hf_models["bert"], data))
    assert "only one label" in message


async def test_a_sequence_classifier_is_refused_as_a_causal_lm(
    queue_dir: Path, models_dir: Path, tmp_path: Path, hf_models: dict[str, Path]
) -> None:
    data = lm_csv(tmp_path / "lm.csv")
    task = {
        "task_type": "causal_lm_finetune",
        "model_path": str(hf_models["head3"]),
        "data_source": str(data),
    }
    message = await refused(queue_dir, models_dir, task)
    assert "not a causal LM" in message


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"label_column": "label"}, "label_column applies to text_classification_finetune only"),
        ({"prompt_column": "text"}, "give prompt_column and completion_column together"),
        ({"eval_metric": "accuracy"}, "classification metric"),
        ({"eval_split": 0, "early_stopping_patience": 2}, "needs an eval set"),
        ({"batch_size": 0}, "batch_size"),
        ({"learning_rate": -1}, "learning_rate"),
    ],
)
async def test_inconsistent_causal_lm_options_are_refused(
    queue_dir: Path,
    models_dir: Path,
    tmp_path: Path,
    hf_models: dict[str, Path],
    extra: dict[str, Any],
    expected: str,
) -> None:
    data = lm_csv(tmp_path / "lm.csv")
    task = {"task_type": "causal_lm_finetune", "model_path": str(hf_models["gpt2"]), "data_source": str(data)}
    message = await refused(queue_dir, models_dir, {**task, **extra})
    assert expected in message


async def test_the_submit_finetune_tool_queues_a_task_and_refuses_bad_input_as_a_tool_error(
    queue_dir: Path, models_dir: Path, tmp_path: Path, hf_models: dict[str, Path]
) -> None:
    server = build_server(ServerConfig(queue_dir=queue_dir, models_dir=models_dir, execute=False))
    data = sentiment_csv(tmp_path / "d.csv")
    async with Client(server) as client:
        tools = {t.name for t in (await client.list_tools()).tools}
        assert {"submit_finetune_task", "generate"} <= tools
        queued = await call(client, "submit_finetune_task", spec(hf_models["bert"], data, method="lora"))
        assert queued["status"] == "queued" and queued["task_id"].startswith("task_")
        status = await call(client, "get_task_status", {"task_id": queued["task_id"]})
        assert status["task_type"] == "text_classification_finetune"
        error = await call_error(client, "submit_finetune_task", spec(tmp_path / "nowhere", data))
        assert "does not exist" in error
        listed = await call(client, "list_training_tasks", {})
        assert listed["total"] == 1  # the refused one was never queued


def test_the_default_learning_rate_is_larger_for_lora_than_for_a_full_fine_tune() -> None:
    base = {"model_path": "/models/m", "data_source": "/data/d.csv"}
    full = FinetuneSpec.model_validate({**base, "task_type": "text_classification_finetune"})
    lora = FinetuneSpec.model_validate({**full.model_dump(), "method": "lora"})
    causal = FinetuneSpec.model_validate({**base, "task_type": "causal_lm_finetune"})  # LoRA by default
    given = FinetuneSpec.model_validate({**base, "task_type": "causal_lm_finetune", "learning_rate": 1e-5})
    assert (full.effective_learning_rate, lora.effective_learning_rate) == (5e-5, 2e-4)
    assert (causal.effective_learning_rate, given.effective_learning_rate) == (2e-4, 1e-5)
