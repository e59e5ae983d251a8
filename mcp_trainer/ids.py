"""Task and model identifiers: generated sortable, checked strictly before any path is built from one."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable, Iterable

from mcp_trainer.errors import InvalidInputError

__all__ = [
    "all_task_ids",
    "check_distinct_ids",
    "check_model_id",
    "check_pipeline_id",
    "check_task_id",
    "is_model_id",
    "is_task_id",
    "model_id_for",
    "new_pipeline_id",
    "new_task_id",
]

_TASK_RE = re.compile(r"task_\d{8}T\d{6}_[0-9a-f]{8}")
_MODEL_RE = re.compile(r"model_\d{8}T\d{6}_[0-9a-f]{8}")
_PIPELINE_RE = re.compile(r"pipeline_\d{8}T\d{6}_[0-9a-f]{8}")


def new_task_id(now: float | None = None) -> str:
    """A new id: UTC second of creation plus 32 random bits, e.g. `task_20261122T143000_8f3a2c1d`."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(time.time() if now is None else now))
    return f"task_{stamp}_{secrets.token_hex(4)}"


def new_pipeline_id(now: float | None = None) -> str:
    """A new pipeline id, e.g. `pipeline_20261122T143000_8f3a2c1d`."""
    return "pipeline_" + new_task_id(now).removeprefix("task_")


def model_id_for(task_id: str) -> str:
    """Each task produces at most one model, so its id follows from the task's (a retried task reuses it)."""
    return "model_" + check_task_id(task_id).removeprefix("task_")


def _checked(value: object, pattern: re.Pattern[str], kind: str, where: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise InvalidInputError(
            f"{value!r} is not a {kind} id.",
            f"{kind.capitalize()} ids look like '{kind}_20261122T143000_8f3a2c1d'; {where}.",
        )
    return value


def is_task_id(text: str) -> bool:
    """Whether `text` is a well-formed task id."""
    return _TASK_RE.fullmatch(text) is not None


def is_model_id(text: str) -> bool:
    """Whether `text` is a well-formed model id."""
    return _MODEL_RE.fullmatch(text) is not None


def all_task_ids(texts: Iterable[str]) -> bool:
    """Whether every one of these strings is a well-formed task id (one pass at C speed)."""
    return all(map(_TASK_RE.fullmatch, texts))


def check_task_id(task_id: object) -> str:
    """Return `task_id` if it is well formed; raise InvalidInputError otherwise."""
    return _checked(task_id, _TASK_RE, "task", "copy one from submit_training_task or list_training_tasks")


def check_model_id(model_id: object) -> str:
    """Return `model_id` if it is well formed; raise InvalidInputError otherwise."""
    return _checked(model_id, _MODEL_RE, "model", "a completed task's status names its model")


def check_pipeline_id(pipeline_id: object) -> str:
    """Return `pipeline_id` if it is well formed; raise InvalidInputError otherwise."""
    return _checked(pipeline_id, _PIPELINE_RE, "pipeline", "copy one from submit_pipeline or list_pipelines")


def check_distinct_ids(ids: Iterable[str], check: Callable[[object], str], what: str, one: str) -> None:
    """For a spec's validator: ValueError when `ids` (the field `what`, each `one`) repeats one or holds
    a malformed one (`check` says how it reads)."""
    ids = list(ids)
    if len(set(ids)) != len(ids):
        raise ValueError(f"{what} names {one} twice")
    for value in ids:
        try:
            check(value)
        except InvalidInputError as exc:
            raise ValueError(str(exc)) from None
