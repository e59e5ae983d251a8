"""metadata.json of a fine-tuned model: the task, its parameters, the results, the training figures."""

from __future__ import annotations

import platform
import time
from typing import Any

import optuna
import torch

from mcp_trainer.specs.finetune import FinetuneSpec
from mcp_trainer.trainers.base import WorkerContext
from mcp_trainer.trainers.finetune import hf
from mcp_trainer.trainers.finetune.data import TextData
from mcp_trainer.trainers.finetune.train import Hyper, Trained

__all__ = ["metadata_for"]


def metadata_for(
    ctx: WorkerContext,
    spec: FinetuneSpec,
    data: TextData,
    dev: hf.DeviceInfo,
    hyper: Hyper,
    trained: Trained,
    n_trials: int | None,
) -> dict[str, Any]:
    """Everything but the timings and the model files' hashes (the caller and the saver add those)."""
    return {
        "model_id": ctx.model_id,
        "task_id": ctx.record.task_id,
        "task_type": spec.task_type,
        "family": spec.effective_method,
        "name": ctx.record.name,
        "user_id": ctx.record.user_id,
        "created_at": time.time(),
        "parameters": spec.model_dump(mode="json"),
        "best_params": {**hyper.__dict__} if spec.optimize_hyperparameters else {},
        "n_trials_completed": n_trials,
        "scoring": spec.effective_metric if data.eval is not None else None,
        "metrics": trained.metrics,
        "base_model": spec.model_path,
        "method": spec.effective_method,
        "classes": data.labels,
        "target": [spec.effective_label_column] if spec.is_classification else [],
        "features": {"names": [spec.text_column] if spec.prompt_column is None else spec.columns[:1]},
        "data": {"source": spec.data_source, "sha256": data.sha256, "eval_source": spec.eval_data_source},
        "rows": {
            "train": len(data.train),
            "eval": 0 if data.eval is None else len(data.eval),
            "truncated": data.truncated,
        },
        "training": _training(dev, hyper, trained),
        "versions": _versions(),
    }


def _training(dev: hf.DeviceInfo, hyper: Hyper, trained: Trained) -> dict[str, Any]:
    state, cfg = trained.state, trained.cfg
    trainable, total = hf.count_parameters(trained.model)
    return {
        "device": dev.name,
        "precision": dev.precision,
        "steps": state.step,
        "total_steps": cfg.total_steps,
        "epochs": round(state.step / cfg.steps_per_epoch, 3),
        "effective_batch": cfg.effective_batch,
        "learning_rate": hyper.learning_rate,
        "final_micro_batch": state.micro_batch,
        "oom_retries": state.oom_retries,
        "samples_per_s": round(state.samples_seen / max(state.train_seconds, 1e-9), 2),
        "tokens_per_s": round(state.tokens_seen / max(state.train_seconds, 1e-9), 1),
        "peak_gpu_memory_mb": hf.gpu_memory_mb(dev.device),
        "stopped_early": state.stopped_early,
        "best_step": state.best_step,
        "first_step_at": state.first_step_at,
        "trainable_parameters": trainable,
        "total_parameters": total,
    }


def _versions() -> dict[str, str]:
    import peft
    import transformers

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "optuna": optuna.__version__,
        "cuda": str(torch.version.cuda),
    }
