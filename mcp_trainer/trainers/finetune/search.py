"""The Optuna search of a fine-tune: learning rate, batch size and epochs, scored by eval loss, pruning
trials whose eval loss lags the median; resumable from the study on disk."""

from __future__ import annotations

import gc
import math
import time
from dataclasses import dataclass
from typing import Any

import optuna
import torch

from mcp_trainer.records import ErrorKind
from mcp_trainer.specs.finetune import BATCH_SIZES, FinetuneSpec
from mcp_trainer.trainers.base import StopRequested, TaskFailure, WorkerContext
from mcp_trainer.trainers.finetune import hf
from mcp_trainer.trainers.finetune.data import TextData
from mcp_trainer.trainers.finetune.train import Hyper, train_once
from mcp_trainer.trainers.study import open_study

__all__ = ["search_hyperparameters"]

_FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
_TRIAL_FAILURES = (ErrorKind.DIVERGENCE, ErrorKind.OUT_OF_MEMORY)


class _TrialFailed(Exception):
    """A search trial whose settings diverged or ran out of memory: it fails, the search goes on."""


@dataclass
class _Search:
    ctx: WorkerContext
    spec: FinetuneSpec
    data: TextData
    tokenizer: Any
    dev: hf.DeviceInfo
    study: optuna.Study
    deadline: float | None

    def finished(self) -> int:
        return len(self.study.get_trials(deepcopy=False, states=_FINISHED))

    def objective(self, trial: optuna.Trial) -> float:
        self.ctx.check_stop()
        spec = self.spec
        sizes = [b for b in BATCH_SIZES if b <= max(len(self.data.train), BATCH_SIZES[0])]
        lr_low, lr_high = min(1e-5, spec.effective_learning_rate), max(1e-3, spec.effective_learning_rate)
        hyper = Hyper(
            trial.suggest_float("learning_rate", lr_low, lr_high, log=True),
            trial.suggest_categorical("batch_size", sizes),
            trial.suggest_int("epochs", 1, spec.epochs),
        )
        low = 5.0 + 45.0 * self.finished() / spec.n_trials
        try:
            trained = train_once(
                self.ctx,
                spec,
                self.data,
                self.tokenizer,
                self.dev,
                hyper,
                span=(low, low + 45.0 / spec.n_trials),
                trial=trial,
            )
        except TaskFailure as failure:
            if failure.kind in _TRIAL_FAILURES:  # these settings failed; the search goes on
                raise _TrialFailed(failure.message) from failure
            raise
        history = trained.state.eval_history
        del trained
        gc.collect()
        if self.dev.is_cuda:
            torch.cuda.empty_cache()
        return min((e["eval_loss"] for e in history), default=math.inf)

    def after(self, study: optuna.Study, _: optuna.trial.FrozenTrial) -> None:
        best = _best(study)
        self.ctx.report(
            phase="searching",
            trial=self.finished(),
            n_trials=self.spec.n_trials,
            best_score=None if best is None else round(best.value or 0.0, 6),
            best_params=None if best is None else best.params,
            force=True,
        )
        self.ctx.check_stop()
        if self.ctx.should_finish() or (self.deadline is not None and time.monotonic() >= self.deadline):
            study.stop()


def search_hyperparameters(
    ctx: WorkerContext, spec: FinetuneSpec, data: TextData, tokenizer: Any, dev: hf.DeviceInfo
) -> tuple[Hyper, int]:
    """The best hyperparameters found and the trials finished; raises TaskFailure (timeout) when no
    trial finished with an eval loss."""
    study = open_study(
        ctx.work_dir,
        study_name=ctx.record.task_id,
        direction="minimize",
        seed=spec.seed,
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0),
    )
    deadline = None if spec.timeout_s is None else time.monotonic() + spec.timeout_s
    search = _Search(ctx, spec, data, tokenizer, dev, study, deadline)
    done = search.finished()
    ctx.report(phase="searching", trial=done, n_trials=spec.n_trials, percent=5.0, force=True)
    if spec.n_trials - done > 0:
        study.optimize(
            search.objective, n_trials=spec.n_trials - done, callbacks=[search.after], catch=(_TrialFailed,)
        )
    best = _best(study)
    if best is None and ctx.should_finish():
        raise StopRequested  # asked to keep the best, and there is none yet
    if best is None:
        raise TaskFailure(
            ErrorKind.TIMEOUT,
            "No search trial finished with an eval loss.",
            "Raise timeout_s or n_trials, or train without optimize_hyperparameters.",
        )
    params = best.params
    hyper = Hyper(float(params["learning_rate"]), int(params["batch_size"]), int(params["epochs"]))
    return hyper, search.finished()


def _best(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    complete = [t for t in complete if t.value is not None and math.isfinite(t.value)]
    return min(complete, key=lambda t: float(t.value or 0.0)) if complete else None
