"""Maps `task_type` to the trainer that runs it, imported lazily (in the worker only)."""

from __future__ import annotations

import importlib

from mcp_trainer.trainers.base import Trainer

__all__ = ["TRAINERS", "load_trainer"]

TRAINERS: dict[str, str] = {
    "svm_classification": "mcp_trainer.trainers.svm:SVMTrainer",
    "svm_regression": "mcp_trainer.trainers.svm:SVMTrainer",
}


def load_trainer(task_type: str) -> Trainer:
    """Instantiate the trainer of `task_type`; raises KeyError for an unknown type."""
    module_name, _, class_name = TRAINERS[task_type].partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    trainer: Trainer = cls()
    return trainer
