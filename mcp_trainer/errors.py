"""Errors the core raises: each says what was wrong and how to fix it, in words an agent can act on."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

__all__ = [
    "InvalidInputError",
    "InvalidStateError",
    "TaskNotFoundError",
    "TrainerError",
    "closest",
    "describe_validation_error",
    "unknown_parameter",
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


def closest(name: str, choices: Iterable[str]) -> str | None:
    """The choice a typo most likely meant (`n_trails` -> `n_trials`), or None when none is close."""
    found = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return found[0] if found else None


def unknown_parameter(name: str, known: Iterable[str]) -> str:
    """`unknown parameter 'n_trails' (did you mean 'n_trials'?)`, or the known names when none is close."""
    names = sorted(known)
    guess = closest(name, names)
    if guess is not None:
        return f"unknown parameter {name!r} (did you mean {guess!r}?)"
    return f"unknown parameter {name!r} (known: {', '.join(names)})"


# What each kind of pydantic error requires of the value, as the end of "<field> must be ...".
_REQUIREMENTS = {
    "greater_than": "greater than {gt}",
    "greater_than_equal": "at least {ge}",
    "less_than": "less than {lt}",
    "less_than_equal": "at most {le}",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "finite_number": "a finite number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "text",
    "list_type": "a list",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
    "none_required": "null",
    "string_too_short": "at least {min_length} characters long",
    "string_too_long": "at most {max_length} characters long",
    "too_short": "at least {min_length} items long",
    "too_long": "at most {max_length} items long",
}
_QUOTED = re.compile(r"'([^']*)'")


def describe_validation_error(exc: ValidationError, fields: Iterable[str] = ()) -> str:
    """One sentence per field of a pydantic ValidationError, in words an agent can act on: no pydantic
    wording, no URLs. `fields` are the valid names, for suggestions when a name is unknown."""
    known = list(fields)
    problems: dict[str, _Problem] = {}
    for err in exc.errors(include_url=False):
        field = _field_of(err)
        problem = problems.setdefault(field, _Problem(field))
        problem.add(err, known)
    return "; ".join(p.sentence() for p in problems.values())


class _Problem:
    """What is wrong with one field; a field of several types gets one requirement per type."""

    def __init__(self, field: str) -> None:
        self.field = field
        self.requirements: list[str] = []
        self.sentences: list[str] = []
        self.given: Any = None
        self.has_given = False
        self.suggestion: str | None = None

    def add(self, err: ErrorDetails, known: list[str]) -> None:
        kind, ctx = err["type"], err.get("ctx") or {}
        if kind == "missing":
            self._once(f"{self.field} is required")
        elif kind == "extra_forbidden":
            self._once(unknown_parameter(self.field, known))
        elif kind in ("literal_error", "enum"):
            choices = _QUOTED.findall(str(ctx.get("expected", "")))
            self._require("one of " + ", ".join(repr(c) for c in choices), err)
            if isinstance(err.get("input"), str):
                self.suggestion = closest(err["input"], choices)
        elif kind in _REQUIREMENTS:
            self._require(_REQUIREMENTS[kind].format(**ctx), err)
        else:  # a validator's own sentence ("Value error, ..."), or a kind without a template
            text = err["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
            named = not err["loc"] or text.startswith(self.field)
            self._once(text if named else f"{self.field}: {text}")

    def _once(self, sentence: str) -> None:
        if sentence not in self.sentences:
            self.sentences.append(sentence)

    def _require(self, requirement: str, err: ErrorDetails) -> None:
        if requirement not in self.requirements:
            self.requirements.append(requirement)
        given = err.get("input")
        if not isinstance(given, dict):
            self.given, self.has_given = given, True

    def sentence(self) -> str:
        parts = list(self.sentences)
        if self.requirements:
            text = f"{self.field} must be {' or '.join(self.requirements)}"
            guess = f"did you mean {self.suggestion!r}?" if self.suggestion is not None else None
            if self.has_given:
                text += f" (got {_shown(self.given)}" + (f", {guess})" if guess else ")")
            elif guess:
                text += f" ({guess})"
            parts.append(text)
        return "; ".join(parts)


def _field_of(err: ErrorDetails) -> str:
    loc = err["loc"]
    if not loc:
        return "the request"
    field = str(loc[0])
    if len(loc) > 1 and isinstance(loc[1], int):
        field += f"[{loc[1]}]"
    return field


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
