"""The training loop of a fine-tune: plain PyTorch, resumable, with out-of-memory and divergence handling.

Data order is a function of (seed, epoch) only, and every optimizer step consumes a fixed slice of it, so
a run resumed from the checkpoint of step k sees exactly the batches the uninterrupted run would have seen
from step k + 1. When a micro-batch runs out of GPU memory the step is redone with the micro-batch halved
and twice as many accumulation steps: the examples per optimizer step (the effective batch) are unchanged.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import torch
from torch import nn

from mcp_trainer.trainers.base import StopRequested

__all__ = [
    "Divergence",
    "EvalResult",
    "LoopConfig",
    "LoopHooks",
    "LoopState",
    "OutOfMemory",
    "is_out_of_memory",
    "make_scheduler",
    "run_loop",
    "steps_per_epoch",
]

log = logging.getLogger(__name__)


class Divergence(Exception):
    """The loss became NaN, infinite, or exploded."""

    def __init__(self, step: int, loss: float, why: str) -> None:
        super().__init__(f"the loss {why} at step {step} (loss={loss})")
        self.step = step
        self.loss = loss


class OutOfMemory(Exception):
    """Out of memory even at the smallest micro-batch the retries allow."""

    def __init__(self, micro_batch: int, retries: int) -> None:
        super().__init__(f"out of memory at micro-batch {micro_batch} after {retries} retries")
        self.micro_batch = micro_batch
        self.retries = retries


def is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
    )


@dataclass(frozen=True)
class LoopConfig:
    batch_size: int  # examples per micro-batch, before any out-of-memory halving
    gradient_accumulation_steps: int
    learning_rate: float
    total_steps: int  # optimizer steps
    steps_per_epoch: int
    lr_scheduler: Literal["linear", "cosine", "constant"] = "linear"
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0
    max_grad_norm: float | None = 1.0
    seed: int = 42
    eval_every_steps: int | None = None  # None: at the end of each epoch
    checkpoint_every_steps: int | None = None  # a checkpoint is also taken at the end of each epoch
    early_stopping_patience: int | None = None
    higher_is_better: bool = False
    max_oom_retries: int = 3
    divergence_factor: float = 1e3
    autocast_dtype: torch.dtype | None = None
    deadline: float | None = None  # time.monotonic() after which training stops early

    @property
    def effective_batch(self) -> int:
        return self.batch_size * self.gradient_accumulation_steps


@dataclass(frozen=True)
class EvalResult:
    loss: float
    metric: float  # what early stopping watches
    metrics: dict[str, float]


@dataclass
class LoopState:
    """Everything a checkpoint must restore besides the model and optimizer."""

    step: int = 0
    micro_batch: int = 0  # the current micro-batch size (0: not started)
    oom_retries: int = 0
    best_metric: float | None = None
    best_loss: float | None = None  # the eval loss at best_step: it breaks ties of the metric
    best_step: int | None = None
    evals_without_improvement: int = 0
    reference_loss: float | None = None  # mean of the first steps' losses, to notice an explosion
    first_losses: list[float] = field(default_factory=list)
    loss_history: list[tuple[int, float]] = field(default_factory=list)
    eval_history: list[dict[str, float]] = field(default_factory=list)
    samples_seen: int = 0
    tokens_seen: int = 0
    train_seconds: float = 0.0
    stopped_early: str | None = None  # "early_stopping", "timeout" or "stop_requested"
    first_step_at: float | None = None  # time.time() at the end of the first optimizer step

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoopState:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        state = cls(**known)
        state.loss_history = [(int(s), float(v)) for s, v in state.loss_history]
        return state


class Batch(Protocol):
    """A collated micro-batch: tensors by name, plus its size in examples and in real tokens."""

    tensors: dict[str, torch.Tensor]
    n_examples: int
    n_tokens: int


class LoopHooks(Protocol):
    def collate(self, indices: Sequence[int]) -> Batch: ...

    def evaluate(self, model: nn.Module) -> EvalResult: ...

    def save_checkpoint(self, state: LoopState, reason: str) -> None: ...

    def save_best(self, state: LoopState) -> None: ...

    def progress(self, state: LoopState, stats: dict[str, float]) -> None: ...

    def should_stop(self) -> bool: ...

    def should_finish(self) -> bool: ...


def steps_per_epoch(n_examples: int, effective_batch: int) -> int:
    return max(1, math.ceil(n_examples / effective_batch))


def epoch_order(n_examples: int, seed: int, epoch: int) -> list[int]:
    """The order of the examples in `epoch`: the same for the same (seed, epoch), whatever ran before."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(n_examples, generator=generator).tolist()


def make_scheduler(
    optimizer: torch.optim.Optimizer, kind: str, warmup_steps: int, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    def factor(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        if kind == "constant":
            return 1.0
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        progress = min(max(progress, 0.0), 1.0)
        if kind == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0 - progress

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def make_optimizer(model: nn.Module, cfg: LoopConfig) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; biases and norms get no weight decay."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "norm" in name.lower() else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.learning_rate, fused=None)


def _chunks(indices: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for start in range(0, len(indices), size):
        yield indices[start : start + size]


def _free_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _step_indices(
    state: LoopState, cfg: LoopConfig, n_examples: int, cache: dict[int, list[int]]
) -> list[int]:
    epoch, k = divmod(state.step, cfg.steps_per_epoch)
    if epoch not in cache:
        cache.clear()
        cache[epoch] = epoch_order(n_examples, cfg.seed, epoch)
    order = cache[epoch]
    return order[k * cfg.effective_batch : (k + 1) * cfg.effective_batch]


def _forward_backward(
    model: nn.Module,
    hooks: LoopHooks,
    indices: Sequence[int],
    micro: int,
    device: torch.device,
    cfg: LoopConfig,
) -> tuple[float, int]:
    """Accumulate the gradients of one optimizer step; returns the step's mean loss and real tokens."""
    total = len(indices)
    loss_sum = torch.zeros((), device=device)
    tokens = 0
    for chunk in _chunks(indices, micro):
        if hooks.should_stop():
            raise StopRequested
        batch = hooks.collate(chunk)
        tokens += batch.n_tokens
        inputs = {k: v.to(device, non_blocking=True) for k, v in batch.tensors.items()}
        with torch.autocast(device.type, dtype=cfg.autocast_dtype, enabled=cfg.autocast_dtype is not None):
            loss = model(**inputs).loss
        weight = len(chunk) / total
        (loss * weight).backward()
        loss_sum += loss.detach().float() * weight
    return float(loss_sum.item()), tokens


def _check_loss(state: LoopState, loss: float, cfg: LoopConfig) -> None:
    step = state.step + 1
    if not math.isfinite(loss):
        raise Divergence(step, loss, "became NaN" if math.isnan(loss) else "became infinite")
    if state.reference_loss is None:
        state.first_losses.append(loss)
        if len(state.first_losses) >= 5:
            state.reference_loss = sum(state.first_losses) / len(state.first_losses)
    elif loss > cfg.divergence_factor * max(state.reference_loss, 1e-3):
        raise Divergence(step, loss, f"exploded past {cfg.divergence_factor:g}x its starting value")


def _evaluate(model: nn.Module, hooks: LoopHooks, state: LoopState, cfg: LoopConfig) -> bool:
    """Evaluate, remember the best; returns True when early stopping says to stop."""
    model.eval()
    with torch.no_grad():
        result = hooks.evaluate(model)
    model.train()
    state.eval_history.append({"step": float(state.step), "eval_loss": result.loss, **result.metrics})
    if _better(result, state, cfg):
        state.best_metric = result.metric
        state.best_loss = result.loss
        state.best_step = state.step
        state.evals_without_improvement = 0
        hooks.save_best(state)
    else:
        state.evals_without_improvement += 1
    return (
        cfg.early_stopping_patience is not None
        and state.evals_without_improvement >= cfg.early_stopping_patience
    )


def _better(result: EvalResult, state: LoopState, cfg: LoopConfig) -> bool:
    """Whether this evaluation beats the best so far: a better metric, or the same metric and a lower eval
    loss (accuracy ties at 1.0 on small data while the loss keeps telling the weights apart)."""
    if state.best_metric is None:
        return True
    if result.metric != state.best_metric:
        return (
            result.metric > state.best_metric if cfg.higher_is_better else result.metric < state.best_metric
        )
    return state.best_loss is not None and result.loss < state.best_loss


def _forward_backward_fitting_memory(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    hooks: LoopHooks,
    indices: Sequence[int],
    state: LoopState,
    device: torch.device,
    cfg: LoopConfig,
) -> tuple[float, int]:
    """One step's forward and backward passes; out of memory, it is redone with the micro-batch halved
    (and twice the accumulation), up to `cfg.max_oom_retries` times. Raises OutOfMemory past that."""
    while True:
        try:
            optimizer.zero_grad(set_to_none=True)
            return _forward_backward(model, hooks, indices, state.micro_batch, device, cfg)
        except (torch.OutOfMemoryError, RuntimeError) as exc:
            if not is_out_of_memory(exc):
                raise
            optimizer.zero_grad(set_to_none=True)
            del exc
            _free_memory(device)
            if state.oom_retries >= cfg.max_oom_retries or state.micro_batch == 1:
                raise OutOfMemory(state.micro_batch, state.oom_retries) from None
            state.oom_retries += 1
            state.micro_batch = max(1, state.micro_batch // 2)
            log.warning(
                "out of memory at step %d: retrying with micro-batch %d (%d accumulation steps)",
                state.step + 1,
                state.micro_batch,
                math.ceil(cfg.effective_batch / state.micro_batch),
            )


def _after_step(
    model: nn.Module, hooks: LoopHooks, state: LoopState, cfg: LoopConfig, *, has_eval: bool
) -> bool:
    """Evaluate, check the deadline and checkpoint as the step calls for; True when training stops."""
    end_of_epoch = state.step % cfg.steps_per_epoch == 0 or state.step == cfg.total_steps
    stop = False
    if has_eval and (
        (cfg.eval_every_steps is not None and state.step % cfg.eval_every_steps == 0)
        or (cfg.eval_every_steps is None and end_of_epoch)
    ):
        stop = _evaluate(model, hooks, state, cfg)
        if stop:
            state.stopped_early = "early_stopping"
    if not stop and cfg.deadline is not None and time.monotonic() >= cfg.deadline:
        state.stopped_early = "timeout"
        stop = True
    if not stop and hooks.should_finish():  # stop_training_task: end here and keep what there is
        state.stopped_early = "stop_requested"
        stop = True
    periodic = cfg.checkpoint_every_steps is not None and state.step % cfg.checkpoint_every_steps == 0
    if (end_of_epoch or periodic) and state.step < cfg.total_steps and not stop:
        hooks.save_checkpoint(state, "epoch" if end_of_epoch else "periodic")
    return stop


def run_loop(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    hooks: LoopHooks,
    state: LoopState,
    cfg: LoopConfig,
    n_examples: int,
    device: torch.device,
    *,
    has_eval: bool,
    on_step: Callable[[LoopState], None] | None = None,
) -> LoopState:
    """Train from `state.step` to `cfg.total_steps` (or an early stop); returns the final state."""
    model.train()
    if state.micro_batch == 0:
        state.micro_batch = cfg.batch_size
    order_cache: dict[int, list[int]] = {}
    window: list[tuple[float, int, int]] = []  # (time, samples, tokens) of recent steps, for rates
    while state.step < cfg.total_steps:
        started = time.perf_counter()
        indices = _step_indices(state, cfg, n_examples, order_cache)
        loss, tokens = _forward_backward_fitting_memory(model, optimizer, hooks, indices, state, device, cfg)
        _check_loss(state, loss, cfg)
        if cfg.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(
                [p for p in model.parameters() if p.requires_grad], cfg.max_grad_norm
            )
        optimizer.step()
        scheduler.step()
        state.step += 1
        if state.first_step_at is None:
            state.first_step_at = time.time()
        state.samples_seen += len(indices)
        state.tokens_seen += tokens
        elapsed = time.perf_counter() - started
        state.train_seconds += elapsed
        state.loss_history.append((state.step, round(loss, 6)))
        window.append((elapsed, len(indices), tokens))
        del window[:-20]
        seconds = sum(w[0] for w in window) or 1e-9
        stats = {
            "loss": loss,
            "learning_rate": float(scheduler.get_last_lr()[0]),
            "samples_per_s": sum(w[1] for w in window) / seconds,
            "tokens_per_s": sum(w[2] for w in window) / seconds,
        }
        hooks.progress(state, stats)
        if on_step is not None:
            on_step(state)
        if _after_step(model, hooks, state, cfg, has_eval=has_eval):
            break
    return state
