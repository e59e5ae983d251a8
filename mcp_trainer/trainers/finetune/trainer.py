"""Runs a fine-tune task: load the model's tokenizer and the data, an optional Optuna search, the final
training run with checkpoints, then the model directory and its report."""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from mcp_trainer.artifacts.model_dir import save_model_tree
from mcp_trainer.artifacts.plots_state import drawing_entry, publish_plots
from mcp_trainer.machine import available_cpus
from mcp_trainer.records import ErrorKind, TaskResult
from mcp_trainer.specs.finetune import FinetuneSpec
from mcp_trainer.trainers.base import TaskFailure, Trainer, WorkerContext
from mcp_trainer.trainers.finetune import hf
from mcp_trainer.trainers.finetune.data import TextData, load_text_data
from mcp_trainer.trainers.finetune.metadata import metadata_for
from mcp_trainer.trainers.finetune.report import loss_curve_png, summary_markdown
from mcp_trainer.trainers.finetune.search import search_hyperparameters
from mcp_trainer.trainers.finetune.train import CHECKPOINTS_DIR, Hyper, Trained, train_once

__all__ = ["FinetuneTrainer"]

log = logging.getLogger(__name__)


class FinetuneTrainer(Trainer):
    def run(self, ctx: WorkerContext) -> TaskResult:
        spec = ctx.record.spec
        assert isinstance(spec, FinetuneSpec)
        started = time.perf_counter()
        torch.set_num_threads(ctx.cpu_share or available_cpus())  # its share of the machine
        dev = hf.pick_device(spec.precision)
        ctx.report(phase="loading_model", percent=1.0, message=f"device {dev.name}", force=True)
        tokenizer = hf.load_tokenizer(spec)
        data = _load_data(spec, tokenizer)
        timings = {"load": time.perf_counter() - started, "search": 0.0}
        ctx.check_stop()
        hyper, n_trials = Hyper(spec.effective_learning_rate, spec.batch_size, spec.epochs), None
        if spec.optimize_hyperparameters:
            t0 = time.perf_counter()
            hyper, n_trials = search_hyperparameters(ctx, spec, data, tokenizer, dev)
            timings["search"] = time.perf_counter() - t0
            if ctx.should_finish():  # it ended the search; the final training is a request of its own
                ctx.finish_event.clear()
                ctx.warn(
                    f"stop_training_task ended the hyperparameter search after {n_trials} trials; the final "
                    "training with the best settings runs in full (call stop_training_task again to end it)"
                )
        searched = spec.optimize_hyperparameters
        ctx.report(phase="training", percent=50.0 if searched else 5.0, force=True)
        trained = train_once(ctx, spec, data, tokenizer, dev, hyper, span=(50.0 if searched else 5.0, 95.0))
        ctx.check_stop()
        _report_kept(ctx, spec, trained)
        ctx.report(phase="saving", percent=97.0, force=True)
        meta = metadata_for(ctx, spec, data, dev, hyper, trained, n_trials)
        meta["kept_weights"] = {"policy": spec.effective_keep_weights, "step": trained.kept_step}
        meta["warnings"] = list(ctx.progress.warnings)
        timings |= {"train": trained.state.train_seconds, "total": time.perf_counter() - started}
        meta["timings_s"] = {k: round(v, 3) for k, v in timings.items()}
        path = _save(ctx, trained, tokenizer, meta)
        # The model is saved: its checkpoints (weights and optimizer state: gigabytes for a large model)
        # have done their job, and a completed task is never resumed.
        shutil.rmtree(ctx.work_dir / CHECKPOINTS_DIR, ignore_errors=True)
        ctx.report(phase="done", percent=100.0, eta_s=0.0, force=True)
        return TaskResult(
            model_id=ctx.model_id,
            model_dir=str(path),
            metrics=trained.metrics,
            best_params=meta["best_params"],
            n_trials_completed=n_trials,
        )


def _report_kept(ctx: WorkerContext, spec: FinetuneSpec, trained: Trained) -> None:
    """The status's training figures, once training ends, describe the weights kept: the same eval loss
    and metric as the result's metrics."""
    training = ctx.progress.training
    if training is None:
        return
    metrics = trained.metrics
    ctx.report(
        training=training.model_copy(
            update={
                "eval_loss": metrics.get("eval_loss"),
                "eval_metric": metrics.get(spec.effective_metric),
                "kept_step": trained.kept_step,
            }
        ),
        force=True,
    )


def _load_data(spec: FinetuneSpec, tokenizer: Any) -> TextData:
    data = load_text_data(spec, tokenizer, hf.head_labels(spec))
    if len(data.train) == 0:
        raise TaskFailure(
            ErrorKind.DATA_ERROR, "No training examples are left after the eval split.", "Lower eval_split."
        )
    if data.truncated:
        log.warning("%d training examples were cut at max_seq_length=%d", data.truncated, spec.max_seq_length)
    return data


def _save(ctx: WorkerContext, trained: Trained, tokenizer: Any, meta: dict[str, Any]) -> Path:
    """Save the model directory; its loss curve is drawn after the result (artifacts/plots_state.py)."""
    state = trained.state
    summary = summary_markdown(meta)
    reports: dict[str, str | bytes] = {
        "loss_history.csv": "step,loss\n" + "".join(f"{s},{v}\n" for s, v in state.loss_history),
        "eval_history.json": json.dumps(state.eval_history, indent=1),
        "summary.md": summary,
    }
    no_steps = {} if state.loss_history else {"loss_curve": "no optimizer step was taken"}
    meta["plots"] = drawing_entry([] if no_steps else ["loss_curve"], no_steps)

    def write(target: Path) -> None:
        hf.save_pretrained(trained.model, tokenizer, target)

    path = save_model_tree(ctx.models_dir, ctx.model_id, write, meta, reports, ctx.signer)
    if not no_steps:
        history, evals = list(state.loss_history), list(state.eval_history)
        ctx.later(lambda: _draw_loss_curve(ctx, history, evals, summary))
    return path


def _draw_loss_curve(
    ctx: WorkerContext, history: list[tuple[int, float]], evals: list[dict[str, float]], summary: str
) -> None:
    """Draw the loss curve of a saved model and publish it into its directory (after the result). Never
    raises: a plot left pending is then reported missing."""
    started = time.perf_counter()
    try:
        png = loss_curve_png(history, evals)
        images = {"loss_curve.png": png} if png is not None else {}
        plots = {
            "files": list(images),
            "bytes": {name: len(data) for name, data in images.items()},
            "skipped": {},
            "failed": {} if images else {"loss_curve": "it could not be drawn (see the task log)"},
            "seconds": round(time.perf_counter() - started, 3),
        }
        if not publish_plots(ctx.models_dir, ctx.model_id, images, plots, summary):
            log.info("model %s was removed before its loss curve was drawn", ctx.model_id)
    except Exception:
        log.exception("the loss curve of %s could not be published", ctx.model_id)
