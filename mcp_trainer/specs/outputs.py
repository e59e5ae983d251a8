"""The named outputs a task's result holds, which a later pipeline stage refers to as `${stage.name}`.

Every task has `task_id`; a task that makes a model has `model_id` and `model_dir`. Each spec says which
it produces (`outputs()`), so that a reference to an output a stage never makes is refused at submit.
"""

from __future__ import annotations

__all__ = ["COMMON_OUTPUTS", "MODEL_OUTPUTS"]

COMMON_OUTPUTS = frozenset({"task_id"})
MODEL_OUTPUTS = frozenset({"model_id", "model_dir"})
