"""Errors the core raises: each says what was wrong and how to fix it, in words an agent can act on."""

from __future__ import annotations

from pydantic import ValidationError

__all__ = [
    "InvalidInputError",
    "InvalidStateError",
    "TaskNotFoundError",
    "TrainerError",
    "describe_validation_error",
]


class TrainerError(Exception):
    """Base class of every error the caller can act on."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} {self.hint}" if self.hint else self.message


class InvalidInputError(TrainerError):
    """The arguments or the data cannot be used; nothing was changed."""


class TaskNotFoundError(TrainerError):
    """No task has that id."""


class InvalidStateError(TrainerError):
    """The task is in a state that does not allow the request (e.g. cancelling a finished task)."""


def describe_validation_error(exc: ValidationError) -> str:
    """Turn a pydantic ValidationError into one readable sentence per field."""
    by_field: dict[str, list[str]] = {}
    for err in exc.errors(include_url=False):
        field = str(err["loc"][0]) if err["loc"] else ""
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "is not a known parameter"
        elif err["type"] == "literal_error":
            msg = msg.replace("Input should be", "must be")
        given = err.get("input")
        if err["type"] not in ("missing", "extra_forbidden") and not isinstance(given, dict):
            msg += f" (got {given!r})"
        # A field of several types gets one error per type: keep each distinct message once, joined by "or".
        by_field.setdefault(field, [])
        if msg not in by_field[field]:
            by_field[field].append(msg)
    return "; ".join(f"{f}: {' or '.join(m)}" if f else " or ".join(m) for f, m in by_field.items())
