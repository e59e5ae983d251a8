"""Task and model identifiers: generated sortable, checked strictly before any path is built from one."""

from __future__ import annotations

import re
import secrets
import time

from mcp_trainer.errors import InvalidInputError

__all__ = ["check_model_id", "check_task_id", "model_id_for", "new_task_id"]

_TASK_RE = re.compile(r"task_\d{8}T\d{6}_[0-9a-f]{8}")
_MODEL_RE = re.compile(r"model_\d{8}T\d{6}_[0-9a-f]{8}")


def new_task_id(now: float | None = None) -> str:
    """A new id: UTC second of creation plus 32 random bits, e.g. `task_20261122T143000_8f3a2c1d`."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(time.time() if now is None else now))
    return f"task_{stamp}_{secrets.token_hex(4)}"


def model_id_for(task_id: str) -> str:
    """Each task produces at most one model, so its id follows from the task's (a retried task reuses it)."""
    return "model_" + check_task_id(task_id).removeprefix("task_")


def check_task_id(task_id: object) -> str:
    """Return `task_id` if it is well formed; raise InvalidInputError otherwise."""
    if not isinstance(task_id, str) or not _TASK_RE.fullmatch(task_id):
        raise InvalidInputError(
            f"{task_id!r} is not a task id.",
            "Task ids look like 'task_20261122T143000_8f3a2c1d'; copy one from submit_training_task "
            "or list_training_tasks.",
        )
    return task_id


def check_model_id(model_id: object) -> str:
    """Return `model_id` if it is well formed; raise InvalidInputError otherwise."""
    if not isinstance(model_id, str) or not _MODEL_RE.fullmatch(model_id):
        raise InvalidInputError(
            f"{model_id!r} is not a model id.",
            "Model ids look like 'model_20261122T143000_8f3a2c1d'; "
            "a completed task's status names its model.",
        )
    return model_id
