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
    """Turn a pydantic ValidationError into one readable sentence per problem."""
    parts: list[str] = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"] if not isinstance(p, int) or len(err["loc"]) == 1)
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "is not a known parameter"
        elif err["type"] == "literal_error":
            msg = msg.replace("Input should be", "must be")
        given = err.get("input")
        shown = (
            ""
            if err["type"] in ("missing", "extra_forbidden") or isinstance(given, dict)
            else f" (got {given!r})"
        )
        parts.append(f"{loc}: {msg}{shown}" if loc else f"{msg}{shown}")
    # pydantic reports one error per member of a union; keep each sentence once.
    return "; ".join(dict.fromkeys(parts))
