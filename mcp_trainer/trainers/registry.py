"""Maps `task_type` to the trainer that runs it, imported lazily (in the worker only)."""

from __future__ import annotations

import importlib

from mcp_trainer.specs.finetune import FINETUNE_TASK_TYPES
from mcp_trainer.specs.script import SCRIPT_TASK_TYPES
from mcp_trainer.specs.spaces import TASK_FAMILIES
from mcp_trainer.trainers.base import Trainer

__all__ = ["TRAINERS", "load_trainer"]

# Every tabular task type runs on the scikit-learn trainer; its family comes from the spec.
TRAINERS: dict[str, str] = {
    **dict.fromkeys(TASK_FAMILIES, "mcp_trainer.trainers.tabular.trainer:SklearnTrainer"),
    # torch, transformers and peft come from the `torch` extra; they are imported only when one runs.
    **dict.fromkeys(FINETUNE_TASK_TYPES, "mcp_trainer.trainers.finetune.trainer:FinetuneTrainer"),
    # The user's own script, a child process of the worker (forked from the scikit-learn forkserver).
    **dict.fromkeys(SCRIPT_TASK_TYPES, "mcp_trainer.trainers.script.trainer:ScriptTrainer"),
    "preprocess": "mcp_trainer.trainers.preprocess.trainer:PreprocessTrainer",
    "evaluate": "mcp_trainer.trainers.evaluate.trainer:EvaluateTrainer",
    # A cleanup works on the queue (its store, maintenance's pruning), which trainers may not import: its
    # trainer lives in the engine, and is loaded by name in the worker, whose entry point is the engine's.
    "cleanup": "mcp_trainer.engine.cleanup:CleanupTrainer",
}


def load_trainer(task_type: str) -> Trainer:
    """Instantiate the trainer of `task_type`; raises KeyError for an unknown type."""
    module_name, _, class_name = TRAINERS[task_type].partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    trainer: Trainer = cls()
    return trainer
