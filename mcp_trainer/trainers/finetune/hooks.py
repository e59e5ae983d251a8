"""What connects the training loop to its task: batches, evaluation, checkpoints, progress, stop requests."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import optuna
import torch
from torch import nn

from mcp_trainer.records import TrainingProgress
from mcp_trainer.specs.finetune import FinetuneSpec
from mcp_trainer.trainers.base import WorkerContext
from mcp_trainer.trainers.finetune import hf
from mcp_trainer.trainers.finetune.checkpoints import CheckpointStore, rng_state, trainable_state
from mcp_trainer.trainers.finetune.data import Collated, TextData, collate
from mcp_trainer.trainers.finetune.evaluate import evaluate_examples
from mcp_trainer.trainers.finetune.loop import EvalResult, LoopConfig, LoopState

__all__ = ["TaskHooks"]

log = logging.getLogger(__name__)


class TaskHooks:
    """Connects the loop to the task: batches, evaluation, checkpoints, progress, stop requests."""

    def __init__(
        self,
        ctx: WorkerContext,
        spec: FinetuneSpec,
        data: TextData,
        pad_id: int,
        dev: hf.DeviceInfo,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        cfg: LoopConfig,
        store: CheckpointStore | None,
        run_key: str,
        trial: optuna.Trial | None = None,
        percent_span: tuple[float, float] = (5.0, 95.0),
    ) -> None:
        self.ctx, self.spec, self.data, self.pad_id, self.dev = ctx, spec, data, pad_id, dev
        self.model, self.optimizer, self.scheduler, self.cfg = model, optimizer, scheduler, cfg
        self.store, self.run_key, self.trial, self.percent_span = store, run_key, trial, percent_span
        self.causal = not spec.is_classification
        self.last_eval: dict[str, float] | None = None
        self.best_in_memory: dict[str, torch.Tensor] | None = None

    def collate(self, indices: Sequence[int]) -> Collated:
        return collate(self.data.train, indices, self.pad_id, self.causal)

    def evaluate(self, model: nn.Module) -> EvalResult:
        assert self.data.eval is not None
        n_labels = len(self.data.labels) if self.data.labels else None
        metrics = evaluate_examples(
            model,
            self.data.eval,
            self.pad_id,
            self.causal,
            self.dev.device,
            self.dev.autocast_dtype,
            n_labels,
        )
        self.last_eval = metrics
        watched = self.spec.effective_metric
        log.info("eval at step %d: %s", self.scheduler.last_epoch, metrics)
        if self.trial is not None:
            self.trial.report(metrics["eval_loss"], self.scheduler.last_epoch)
            if self.trial.should_prune():
                raise optuna.TrialPruned(
                    f"eval loss {metrics['eval_loss']} at step {self.scheduler.last_epoch}"
                )
        return EvalResult(metrics["eval_loss"], metrics[watched], metrics)

    def save_checkpoint(self, state: LoopState, reason: str) -> None:
        if self.store is None:
            return
        started = time.perf_counter()
        self.store.save(
            state.step,
            {
                "step": state.step,
                "run_key": self.run_key,
                "weights": trainable_state(self.model),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "loop": state.to_dict(),
                "rng": rng_state(),
            },
        )
        log.info("checkpoint at step %d (%s) in %.2f s", state.step, reason, time.perf_counter() - started)

    def save_best(self, state: LoopState) -> None:
        if self.store is None:
            self.best_in_memory = trainable_state(self.model)
        else:
            self.store.save_best(trainable_state(self.model), state.step)

    def progress(self, state: LoopState, stats: dict[str, float]) -> None:
        cfg = self.cfg
        done = state.step / cfg.total_steps
        low, high = self.percent_span
        remaining = cfg.total_steps - state.step
        per_step = state.train_seconds / max(state.step, 1)
        self.ctx.report(
            percent=round(low + (high - low) * done, 2),
            eta_s=round(per_step * remaining, 1),
            training=TrainingProgress(
                epoch=round(state.step / cfg.steps_per_epoch, 3),
                n_epochs=round(cfg.total_steps / cfg.steps_per_epoch, 3),
                step=state.step,
                total_steps=cfg.total_steps,
                loss=round(stats["loss"], 6),
                learning_rate=stats["learning_rate"],
                samples_per_s=round(stats["samples_per_s"], 2),
                tokens_per_s=round(stats["tokens_per_s"], 1),
                eval_loss=None if self.last_eval is None else self.last_eval["eval_loss"],
                eval_metric=None if self.last_eval is None else self.last_eval[self.spec.effective_metric],
                best_eval_metric=None if state.best_metric is None else round(state.best_metric, 6),
                best_step=state.best_step,
                micro_batch=state.micro_batch,
                gpu_memory_mb=hf.gpu_memory_mb(self.dev.device),
                device=self.dev.name,
            ),
        )

    def should_stop(self) -> bool:
        return self.ctx.should_stop()

    def should_finish(self) -> bool:
        return self.ctx.should_finish()
