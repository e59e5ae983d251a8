"""One training run of a fine-tune with given hyperparameters: build the model, resume from the last
checkpoint of the same run, run the loop, keep the best evaluated weights, and measure the result."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import optuna
import torch
from torch import nn

from mcp_trainer.records import ErrorKind
from mcp_trainer.specs.finetune import FinetuneSpec
from mcp_trainer.trainers.base import TaskFailure, WorkerContext
from mcp_trainer.trainers.finetune import hf
from mcp_trainer.trainers.finetune.checkpoints import CheckpointStore, load_trainable, set_rng_state
from mcp_trainer.trainers.finetune.data import TextData
from mcp_trainer.trainers.finetune.hooks import TaskHooks
from mcp_trainer.trainers.finetune.loop import (
    Divergence,
    LoopConfig,
    LoopState,
    OutOfMemory,
    make_optimizer,
    make_scheduler,
    run_loop,
    steps_per_epoch,
)

__all__ = ["CHECKPOINTS_DIR", "Hyper", "Trained", "train_once"]

log = logging.getLogger(__name__)
CHECKPOINTS_DIR = "checkpoints"  # under the task's work directory


@dataclass(frozen=True)
class Hyper:
    """The hyperparameters a search may change."""

    learning_rate: float
    batch_size: int
    epochs: int

    def key(self) -> str:
        return hashlib.sha256(json.dumps(self.__dict__, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Trained:
    """What one training run produced."""

    model: nn.Module
    state: LoopState
    cfg: LoopConfig
    metrics: dict[str, float]  # of the weights kept
    kept_step: int  # the step whose weights the model keeps


def config_for(spec: FinetuneSpec, data: TextData, dev: hf.DeviceInfo, hyper: Hyper) -> LoopConfig:
    effective = hyper.batch_size * spec.gradient_accumulation_steps
    per_epoch = steps_per_epoch(len(data.train), effective)
    total = spec.max_steps if spec.max_steps is not None else per_epoch * hyper.epochs
    return LoopConfig(
        batch_size=hyper.batch_size,
        gradient_accumulation_steps=spec.gradient_accumulation_steps,
        learning_rate=hyper.learning_rate,
        total_steps=total,
        steps_per_epoch=per_epoch,
        lr_scheduler=spec.lr_scheduler,
        warmup_ratio=spec.warmup_ratio,
        weight_decay=spec.weight_decay,
        max_grad_norm=spec.max_grad_norm,
        seed=spec.seed,
        eval_every_steps=spec.eval_every_steps,
        checkpoint_every_steps=spec.checkpoint_every_steps,
        early_stopping_patience=spec.early_stopping_patience,
        higher_is_better=spec.effective_metric in ("accuracy", "f1_macro"),
        max_oom_retries=spec.max_oom_retries,
        divergence_factor=spec.divergence_factor,
        autocast_dtype=dev.autocast_dtype,
        deadline=None if spec.timeout_s is None else time.monotonic() + spec.timeout_s,
    )


def train_once(
    ctx: WorkerContext,
    spec: FinetuneSpec,
    data: TextData,
    tokenizer: Any,
    dev: hf.DeviceInfo,
    hyper: Hyper,
    *,
    span: tuple[float, float],
    trial: optuna.Trial | None = None,
) -> Trained:
    """Train with `hyper`. The final run (no `trial`) checkpoints under the task's work directory and
    resumes from there; a search trial keeps its best weights in memory. Raises TaskFailure
    (divergence, out_of_memory) when training cannot go on."""
    torch.manual_seed(spec.seed)
    model = hf.build_model(spec, data.labels, tokenizer).to(dev.device)
    if dev.is_cuda:
        torch.cuda.reset_peak_memory_stats(dev.device)
    cfg = config_for(spec, data, dev, hyper)
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(
        optimizer, cfg.lr_scheduler, round(cfg.warmup_ratio * cfg.total_steps), cfg.total_steps
    )
    store = (
        None if trial is not None else CheckpointStore(ctx.work_dir / CHECKPOINTS_DIR, spec.keep_checkpoints)
    )
    state = LoopState() if store is None else _resume(store, hyper.key(), model, optimizer, scheduler, cfg)
    hooks = TaskHooks(
        ctx,
        spec,
        data,
        tokenizer.pad_token_id,
        dev,
        model,
        optimizer,
        scheduler,
        cfg,
        store,
        hyper.key(),
        trial,
        span,
    )
    ctx.report(
        phase="training" if trial is None else "searching",
        message=f"device {dev.name}" + (f"; resumed at step {state.step}" if state.step else ""),
        force=True,
    )
    state = _classified(
        lambda: run_loop(
            model,
            optimizer,
            scheduler,
            hooks,
            state,
            cfg,
            len(data.train),
            dev.device,
            has_eval=data.eval is not None,
        )
    )
    _keep_best(model, spec, data, state, hooks, store)
    return Trained(
        model, state, cfg, _final_metrics(model, data, state, hooks, trial), _kept_step(spec, state)
    )


def _resume(
    store: CheckpointStore,
    run_key: str,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    cfg: LoopConfig,
) -> LoopState:
    """The loop state of the last checkpoint of this run, with the model, optimizer, schedule and random
    state restored; a fresh state when there is none (or only checkpoints of other hyperparameters)."""
    payload = store.latest()
    if payload is None:
        return LoopState()
    if payload.get("run_key") != run_key:
        log.warning("ignoring checkpoints of other hyperparameters (run %s)", payload.get("run_key"))
        return LoopState()
    load_trainable(model, payload["weights"])
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    state = LoopState.from_dict(payload["loop"])
    set_rng_state(payload["rng"])
    log.info("resumed from the checkpoint of step %d of %d", state.step, cfg.total_steps)
    return state


def _classified(run: Any) -> LoopState:
    """Run the loop; its divergence and out-of-memory endings become classified task failures."""
    try:
        state: LoopState = run()
    except Divergence as exc:
        raise TaskFailure(
            ErrorKind.DIVERGENCE,
            f"Training diverged: {exc}.",
            "Lower learning_rate (or add warm-up with warmup_ratio), keep max_grad_norm set, "
            "and check the data for extreme values.",
        ) from None
    except OutOfMemory as exc:
        raise TaskFailure(
            ErrorKind.OUT_OF_MEMORY,
            f"Out of GPU memory even at micro-batch {exc.micro_batch}, after {exc.retries} automatic "
            "retries that halved it.",
            "Lower max_seq_length, use method='lora', or free the GPU; the effective batch can stay the "
            "same with a smaller batch_size and more gradient_accumulation_steps.",
        ) from None
    return state


def _keep_best(
    model: nn.Module,
    spec: FinetuneSpec,
    data: TextData,
    state: LoopState,
    hooks: TaskHooks,
    store: CheckpointStore | None,
) -> None:
    """Load the best evaluated weights when the spec keeps the best and they are not the last ones."""
    if spec.effective_keep_weights != "best":
        return
    if data.eval is None or state.best_step is None or state.best_step == state.step:
        return
    best = hooks.best_in_memory if store is None else store.load_best()
    if best is not None:
        load_trainable(model, best)
        log.info("kept the weights of step %d, the best on %s", state.best_step, spec.effective_metric)


def _kept_step(spec: FinetuneSpec, state: LoopState) -> int:
    if spec.effective_keep_weights == "best" and state.best_step is not None:
        return state.best_step
    return state.step


def _final_metrics(
    model: nn.Module, data: TextData, state: LoopState, hooks: TaskHooks, trial: optuna.Trial | None
) -> dict[str, float]:
    metrics: dict[str, float] = {}
    if data.eval is not None:
        model.eval()
        with torch.no_grad():
            metrics = hooks.evaluate(model).metrics if trial is None else dict(hooks.last_eval or {})
    metrics["train_loss"] = state.loss_history[-1][1] if state.loss_history else math.nan
    return metrics
