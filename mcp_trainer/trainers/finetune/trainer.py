"""Runs a fine-tune task: optional Optuna search, the training loop with checkpoints, artifacts."""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import math
import platform
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch
from torch import nn

from mcp_trainer.artifacts import save_model_tree
from mcp_trainer.finetune_specs import BATCH_SIZES, FinetuneSpec
from mcp_trainer.models import TaskResult, TrainingProgress
from mcp_trainer.trainers.base import (
    DataError,
    Diverged,
    GpuOutOfMemory,
    SearchTimeout,
    Trainer,
    WorkerContext,
)
from mcp_trainer.trainers.finetune import hf
from mcp_trainer.trainers.finetune.checkpoints import (
    CheckpointStore,
    load_trainable,
    rng_state,
    set_rng_state,
    trainable_state,
)
from mcp_trainer.trainers.finetune.data import Collated, Examples, TextData, collate, load_text_data
from mcp_trainer.trainers.finetune.loop import (
    Divergence,
    EvalResult,
    LoopConfig,
    LoopState,
    OutOfMemory,
    make_optimizer,
    make_scheduler,
    run_loop,
    steps_per_epoch,
)
from mcp_trainer.trainers.finetune.report import loss_curve_png, summary_markdown
from mcp_trainer.trainers.study import open_study

__all__ = ["FinetuneTrainer", "Hyper", "evaluate_examples"]

log = logging.getLogger(__name__)
CHECKPOINTS_DIR = "checkpoints"  # under the task's work directory
EVAL_BATCH = 64


@dataclass(frozen=True)
class Hyper:
    """The hyperparameters a search may change."""

    learning_rate: float
    batch_size: int
    epochs: int

    def key(self) -> str:
        return hashlib.sha256(json.dumps(self.__dict__, sort_keys=True).encode()).hexdigest()[:16]


def evaluate_examples(
    model: nn.Module,
    examples: Examples,
    pad_id: int,
    causal: bool,
    device: torch.device,
    autocast_dtype: torch.dtype | None,
    n_labels: int | None,
) -> dict[str, float]:
    """Mean eval loss, plus accuracy and macro F1 for a classifier or perplexity for a language model."""
    total_loss = 0.0
    weight = 0
    correct = 0
    confusion = torch.zeros((n_labels or 1, n_labels or 1), dtype=torch.long)
    for start in range(0, len(examples), EVAL_BATCH):
        idx = list(range(start, min(start + EVAL_BATCH, len(examples))))
        batch = collate(examples, idx, pad_id, causal)
        inputs = {k: v.to(device) for k, v in batch.tensors.items()}
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            out = model(**inputs)
        if causal:
            n = int((inputs["labels"][:, 1:] != -100).sum().item())
            total_loss += float(out.loss.float().item()) * n
            weight += n
        else:
            total_loss += float(out.loss.float().item()) * len(idx)
            weight += len(idx)
            pred = out.logits.argmax(dim=-1).cpu()
            gold = batch.tensors["labels"]
            correct += int((pred == gold).sum().item())
            for g, p in zip(gold.tolist(), pred.tolist(), strict=True):
                confusion[g, p] += 1
    loss = total_loss / max(weight, 1)
    metrics = {"eval_loss": round(loss, 6)}
    if causal:
        metrics["perplexity"] = round(math.exp(min(loss, 50.0)), 4)
    else:
        metrics["accuracy"] = round(correct / max(len(examples), 1), 6)
        f1s = []
        for c in range(confusion.shape[0]):
            tp = int(confusion[c, c])
            fp = int(confusion[:, c].sum()) - tp
            fn = int(confusion[c, :].sum()) - tp
            f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
        metrics["f1_macro"] = round(sum(f1s) / len(f1s), 6)
    return metrics


class _Hooks:
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
                eval_metric=None if state.best_metric is None else round(state.best_metric, 6),
                micro_batch=state.micro_batch,
                gpu_memory_mb=hf.gpu_memory_mb(self.dev.device),
                device=self.dev.name,
            ),
        )

    def should_stop(self) -> bool:
        return self.ctx.should_stop()


class FinetuneTrainer(Trainer):
    def run(self, ctx: WorkerContext) -> TaskResult:
        spec = ctx.record.spec
        assert isinstance(spec, FinetuneSpec)
        started = time.perf_counter()
        torch.set_num_threads(max(1, hf.cpu_threads()))
        dev = hf.pick_device(spec.precision)
        ctx.report(phase="loading_model", percent=1.0, message=f"device {dev.name}", force=True)
        tokenizer = hf.load_tokenizer(spec)
        data = load_text_data(spec, tokenizer, hf.head_labels(spec))
        if len(data.train) == 0:
            raise DataError("No training examples are left after the eval split.", "Lower eval_split.")
        if data.truncated:
            log.warning(
                "%d training examples were cut at max_seq_length=%d", data.truncated, spec.max_seq_length
            )
        load_s = time.perf_counter() - started
        ctx.check_stop()
        hyper = Hyper(spec.effective_learning_rate, spec.batch_size, spec.epochs)
        n_done = None
        search_s = 0.0
        if spec.optimize_hyperparameters:
            t0 = time.perf_counter()
            hyper, n_done = self._search(ctx, spec, data, tokenizer, dev)
            search_s = time.perf_counter() - t0
        ctx.report(phase="training", percent=5.0 if not spec.optimize_hyperparameters else 50.0, force=True)
        span = (50.0, 95.0) if spec.optimize_hyperparameters else (5.0, 95.0)
        model, state, cfg, metrics = self._train(ctx, spec, data, tokenizer, dev, hyper, span=span)
        ctx.check_stop()
        ctx.report(phase="saving", percent=97.0, force=True)
        trainable, total = hf.count_parameters(model)
        best_params: dict[str, Any] = {**hyper.__dict__} if spec.optimize_hyperparameters else {}
        meta: dict[str, Any] = {
            "model_id": ctx.model_id,
            "task_id": ctx.record.task_id,
            "task_type": spec.task_type,
            "family": spec.effective_method,
            "name": ctx.record.name,
            "user_id": ctx.record.user_id,
            "created_at": time.time(),
            "parameters": spec.model_dump(mode="json"),
            "best_params": best_params,
            "n_trials_completed": n_done,
            "scoring": spec.effective_metric if data.eval is not None else None,
            "metrics": metrics,
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
            "training": {
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
                "trainable_parameters": trainable,
                "total_parameters": total,
            },
            "versions": _versions(),
            "timings_s": {
                "load": round(load_s, 3),
                "search": round(search_s, 3),
                "train": round(state.train_seconds, 3),
                "total": round(time.perf_counter() - started, 3),
            },
        }
        reports: dict[str, str | bytes] = {
            "loss_history.csv": "step,loss\n" + "".join(f"{s},{v}\n" for s, v in state.loss_history),
            "eval_history.json": json.dumps(state.eval_history, indent=1),
        }
        png = loss_curve_png(state.loss_history, state.eval_history)
        if png is not None:
            reports["loss_curve.png"] = png
        reports["summary.md"] = summary_markdown(meta)
        path = save_model_tree(
            ctx.models_dir, ctx.model_id, lambda d: _save(model, tokenizer, d), meta, reports
        )
        # The model is saved: its checkpoints (weights and optimizer state: gigabytes for a large model)
        # have done their job, and a completed task is never resumed.
        shutil.rmtree(ctx.work_dir / CHECKPOINTS_DIR, ignore_errors=True)
        ctx.report(phase="done", percent=100.0, eta_s=0.0, force=True)
        return TaskResult(
            model_id=ctx.model_id,
            model_dir=str(path),
            metrics=metrics,
            best_params=best_params,
            n_trials_completed=n_done,
        )

    def _config(self, spec: FinetuneSpec, data: TextData, dev: hf.DeviceInfo, hyper: Hyper) -> LoopConfig:
        effective = hyper.batch_size * spec.gradient_accumulation_steps
        per_epoch = steps_per_epoch(len(data.train), effective)
        total = spec.max_steps if spec.max_steps is not None else per_epoch * hyper.epochs
        deadline = None
        if spec.timeout_s is not None:
            deadline = time.monotonic() + spec.timeout_s
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
            deadline=deadline,
        )

    def _train(
        self,
        ctx: WorkerContext,
        spec: FinetuneSpec,
        data: TextData,
        tokenizer: Any,
        dev: hf.DeviceInfo,
        hyper: Hyper,
        *,
        span: tuple[float, float],
        trial: optuna.Trial | None = None,
    ) -> tuple[nn.Module, LoopState, LoopConfig, dict[str, float]]:
        torch.manual_seed(spec.seed)
        model = hf.build_model(spec, data.labels, tokenizer).to(dev.device)
        if dev.is_cuda:
            torch.cuda.reset_peak_memory_stats(dev.device)
        cfg = self._config(spec, data, dev, hyper)
        optimizer = make_optimizer(model, cfg)
        scheduler = make_scheduler(
            optimizer, cfg.lr_scheduler, round(cfg.warmup_ratio * cfg.total_steps), cfg.total_steps
        )
        run_key = hyper.key()
        store = (
            None
            if trial is not None
            else CheckpointStore(ctx.work_dir / CHECKPOINTS_DIR, spec.keep_checkpoints)
        )
        state = LoopState()
        if store is not None:
            payload = store.latest()
            if payload is not None and payload.get("run_key") == run_key:
                load_trainable(model, payload["weights"])
                optimizer.load_state_dict(payload["optimizer"])
                scheduler.load_state_dict(payload["scheduler"])
                state = LoopState.from_dict(payload["loop"])
                set_rng_state(payload["rng"])
                log.info("resumed from the checkpoint of step %d of %d", state.step, cfg.total_steps)
            elif payload is not None:
                log.warning("ignoring checkpoints of other hyperparameters (run %s)", payload.get("run_key"))
        hooks = _Hooks(
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
            run_key,
            trial,
            span,
        )
        ctx.report(
            phase="training" if trial is None else "searching",
            message=f"device {dev.name}" + (f"; resumed at step {state.step}" if state.step else ""),
            force=True,
        )
        try:
            state = run_loop(
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
        except Divergence as exc:
            raise Diverged(
                f"Training diverged: {exc}.",
                "Lower learning_rate (or add warm-up with warmup_ratio), keep max_grad_norm set, "
                "and check the data for extreme values.",
            ) from None
        except OutOfMemory as exc:
            raise GpuOutOfMemory(
                f"Out of GPU memory even at micro-batch {exc.micro_batch}, after {exc.retries} automatic "
                "retries that halved it.",
                "Lower max_seq_length, use method='lora', or free the GPU; the effective batch can stay the "
                "same with a smaller batch_size and more gradient_accumulation_steps.",
            ) from None
        if data.eval is not None and state.best_step is not None and state.best_step != state.step:
            best = hooks.best_in_memory if store is None else store.load_best()
            if best is not None:
                load_trainable(model, best)
                log.info(
                    "kept the weights of step %d, the best on %s", state.best_step, spec.effective_metric
                )
        metrics: dict[str, float] = {}
        if data.eval is not None:
            model.eval()
            with torch.no_grad():
                metrics = hooks.evaluate(model).metrics if trial is None else dict(hooks.last_eval or {})
        metrics["train_loss"] = state.loss_history[-1][1] if state.loss_history else math.nan
        return model, state, cfg, metrics

    def _search(
        self, ctx: WorkerContext, spec: FinetuneSpec, data: TextData, tokenizer: Any, dev: hf.DeviceInfo
    ) -> tuple[Hyper, int]:
        study = open_study(
            ctx.work_dir,
            study_name=ctx.record.task_id,
            direction="minimize",
            seed=spec.seed,
            pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0),
        )
        finished = (
            optuna.trial.TrialState.COMPLETE,
            optuna.trial.TrialState.PRUNED,
            optuna.trial.TrialState.FAIL,
        )
        sizes = [b for b in BATCH_SIZES if b <= max(len(data.train), BATCH_SIZES[0])]
        lr_low, lr_high = min(1e-5, spec.effective_learning_rate), max(1e-3, spec.effective_learning_rate)
        deadline = None if spec.timeout_s is None else time.monotonic() + spec.timeout_s

        def objective(trial: optuna.Trial) -> float:
            ctx.check_stop()
            hyper = Hyper(
                trial.suggest_float("learning_rate", lr_low, lr_high, log=True),
                trial.suggest_categorical("batch_size", sizes),
                trial.suggest_int("epochs", 1, spec.epochs),
            )
            n = len(study.get_trials(deepcopy=False, states=finished))
            low = 5.0 + 45.0 * n / spec.n_trials
            model, state, _, _ = self._train(
                ctx, spec, data, tokenizer, dev, hyper, span=(low, low + 45.0 / spec.n_trials), trial=trial
            )
            del model
            gc.collect()
            if dev.is_cuda:
                torch.cuda.empty_cache()
            return min((e["eval_loss"] for e in state.eval_history), default=math.inf)

        def after(study: optuna.Study, _: optuna.trial.FrozenTrial) -> None:
            done = len(study.get_trials(deepcopy=False, states=finished))
            best = _best(study)
            ctx.report(
                phase="searching",
                trial=done,
                n_trials=spec.n_trials,
                best_score=None if best is None else round(best.value or 0.0, 6),
                best_params=None if best is None else best.params,
                force=True,
            )
            ctx.check_stop()
            if deadline is not None and time.monotonic() >= deadline:
                study.stop()

        done = len(study.get_trials(deepcopy=False, states=finished))
        ctx.report(phase="searching", trial=done, n_trials=spec.n_trials, percent=5.0, force=True)
        if spec.n_trials - done > 0:
            study.optimize(
                objective, n_trials=spec.n_trials - done, callbacks=[after], catch=(Diverged, GpuOutOfMemory)
            )
        best = _best(study)
        if best is None:
            raise SearchTimeout(
                "No search trial finished with an eval loss.",
                "Raise timeout_s or n_trials, or train without optimize_hyperparameters.",
            )
        params = best.params
        return Hyper(float(params["learning_rate"]), int(params["batch_size"]), int(params["epochs"])), len(
            study.get_trials(deepcopy=False, states=finished)
        )


def _save(model: nn.Module, tokenizer: Any, target: Path) -> None:
    hf.save_pretrained(model, tokenizer, target)


def _best(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    complete = [t for t in complete if t.value is not None and math.isfinite(t.value)]
    return min(complete, key=lambda t: float(t.value or 0.0)) if complete else None


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
