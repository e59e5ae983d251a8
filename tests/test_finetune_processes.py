"""Fine-tunes in real worker processes: through the queue and the MCP tools, killed and resumed, cancelled."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import anyio
import psutil
import pytest
import torch
from mcp import Client
from mcp_calls import call, call_error
from tiny_models import expected_device, lm_csv, make_bert, make_gpt2, sentiment_csv
from waiting import wait_until

from mcp_trainer import TaskStatus, TrainingService
from mcp_trainer.engine.processes import process_group_alive
from mcp_trainer.server import ServerConfig, build_server

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def hf_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf")
    torch.manual_seed(0)
    return {
        "bert": make_bert(root / "bert"),
        "gpt2": make_gpt2(root / "gpt2"),
        "slow": make_bert(root / "slow", hidden=256, layers=6),  # ~1 s per step of 64 long examples
    }


async def test_fine_tunes_run_through_the_mcp_tools_and_their_models_predict_and_generate(
    queue_dir: Path, models_dir: Path, tmp_path: Path, hf_models: dict[str, Path]
) -> None:
    server = build_server(ServerConfig(queue_dir=queue_dir, models_dir=models_dir))
    reviews = sentiment_csv(tmp_path / "reviews.csv", rows=96)
    qa = lm_csv(tmp_path / "qa.csv", rows=48, prompts=True)
    async with Client(server) as client:
        classifier = await call(
            client,
            "submit_finetune_task",
            {
                "task_type": "text_classification_finetune",
                "model_path": str(hf_models["bert"]),
                "data_source": str(reviews),
                "epochs": 6,
                "batch_size": 8,
                "learning_rate": 3e-3,
                "eval_split": 0.25,
            },
        )
        lm = await call(
            client,
            "submit_finetune_task",
            {
                "task_type": "causal_lm_finetune",
                "model_path": str(hf_models["gpt2"]),
                "data_source": str(qa),
                "prompt_column": "prompt",
                "completion_column": "completion",
                "epochs": 3,
                "batch_size": 8,
                "learning_rate": 3e-3,
            },
        )
        done = {}
        for task in (classifier, lm):
            status = await call(client, "wait_for_task", {"task_id": task["task_id"], "timeout_s": 45})
            while status["status"] not in ("completed", "failed", "cancelled"):
                status = await call(client, "wait_for_task", {"task_id": task["task_id"], "timeout_s": 45})
            assert status["status"] == "completed", status
            done[task["task_id"]] = status
        cls_status, lm_status = done[classifier["task_id"]], done[lm["task_id"]]
        assert cls_status["metrics"]["accuracy"] >= 0.9
        assert lm_status["metrics"]["perplexity"] > 1.0

        predicted = await call(
            client,
            "predict",
            {
                "model_id": cls_status["model_id"],
                "rows": [{"text": "the film was great"}, {"text": "awful plot"}],
            },
        )
        assert predicted["predictions"] == ["pos", "neg"] and predicted["classes"] == ["neg", "pos"]
        assert all(abs(sum(p) - 1.0) < 1e-4 for p in predicted["probabilities"])
        generated = await call(
            client,
            "generate",
            {"model_id": lm_status["model_id"], "prompt": "question : good ?", "max_new_tokens": 8},
        )
        assert 0 < generated["n_new_tokens"] <= 8 and isinstance(generated["completion"], str)

        wrong = await call_error(client, "generate", {"model_id": cls_status["model_id"], "prompt": "hello"})
        assert "generate needs a causal_lm_finetune model" in wrong
        bad_rows = await call_error(
            client, "predict", {"model_id": cls_status["model_id"], "rows": [{"txt": "x"}]}
        )
        assert "has no text in 'text'" in bad_rows
        info = await call(client, "get_model_info", {"model_id": cls_status["model_id"]})
        assert info["training"]["device"] == expected_device() and info["training"]["samples_per_s"] > 0
        with anyio.fail_after(60):  # the loss curve follows the completed task
            while info["plots_being_drawn"]:
                await anyio.sleep(0.05)
                info = await call(client, "get_model_info", {"model_id": cls_status["model_id"]})
        assert "loss_curve.png" in info["reports"]
        report = await client.call_tool("get_model_report", {"model_id": cls_status["model_id"]})
        assert not report.is_error and report.structured_content is not None
        assert [p["name"] for p in report.structured_content["plots"]] == ["loss_curve"]
        assert [b.mime_type for b in report.content if b.type == "image"] == ["image/png"]


async def test_a_fine_tune_whose_worker_is_killed_resumes_from_its_last_checkpoint(
    queue_dir: Path, models_dir: Path, tmp_path: Path, hf_models: dict[str, Path]
) -> None:
    data = sentiment_csv(tmp_path / "reviews.csv", rows=160, filler=12)
    task = {
        "task_type": "text_classification_finetune",
        "model_path": str(hf_models["bert"]),
        "data_source": str(data),
        "epochs": 4,
        "batch_size": 4,
        "checkpoint_every_steps": 5,
        "eval_split": 0,
    }
    async with TrainingService(queue_dir, models_dir, max_concurrent=1, poll_interval_s=0.05) as svc:
        task_id = (await svc.submit(task)).task_id

        async def step() -> int:
            training = (await svc.record(task_id)).progress.training
            return 0 if training is None else training.step

        async def past_two_checkpoints() -> bool:
            return await step() >= 12  # checkpoints at steps 5 and 10

        await wait_until(past_two_checkpoints)
        pid = (await svc.record(task_id)).worker_pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        killed_after = await step()

        async def second_attempt() -> bool:
            return bool((await svc.record(task_id)).attempts == 2)

        await wait_until(second_attempt)
        done = await svc.wait(task_id, timeout_s=120)
        assert done.status is TaskStatus.COMPLETED, done.error
        logs = "\n".join(await svc.logs(task_id, tail=2000))
        resumed = re.findall(r"resumed from the checkpoint of step (\d+) of 160", logs)
        assert len(resumed) == 1
        # The last checkpoint before the kill (every 5 steps), not step 0: the step count continued.
        assert 10 <= int(resumed[0]) <= killed_after + 10 and int(resumed[0]) % 5 == 0
        assert done.training is not None and done.training.step == done.training.total_steps == 160


async def test_cancel_mid_step_ends_the_fine_tune_worker_and_leaves_no_process(
    queue_dir: Path, models_dir: Path, tmp_path: Path, hf_models: dict[str, Path]
) -> None:
    data = sentiment_csv(tmp_path / "long.csv", rows=256, filler=100)
    task = {
        "task_type": "text_classification_finetune",
        "model_path": str(hf_models["slow"]),
        "data_source": str(data),
        "batch_size": 64,
        "max_seq_length": 128,
        "eval_split": 0,
    }
    async with TrainingService(queue_dir, models_dir, max_concurrent=1) as svc:
        task_id = (await svc.submit(task)).task_id

        async def training() -> bool:
            record = await svc.record(task_id)
            return bool(record.progress.training and record.worker_pid)

        await wait_until(training)
        pid = (await svc.record(task_id)).worker_pid
        assert pid is not None
        group = [p.pid for p in psutil.Process(pid).children(recursive=True)] + [pid]

        started = time.monotonic()
        view = await svc.cancel(task_id)
        took = time.monotonic() - started

        assert view.status is TaskStatus.CANCELLED
        assert not process_group_alive(pid)
        assert not any(
            psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in group
        )
        print(f"cancel of a fine-tune mid-step took {took:.3f} s")
