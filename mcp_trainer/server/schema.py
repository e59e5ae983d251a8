"""Tool schemas: the parameters of a submit tool made from its spec model, and schemas made compact.

A submit tool's signature is generated from its spec model's fields (types, bounds, enums, defaults,
descriptions), so the tool, the Python API and the task file share one definition of every parameter.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Iterable
from typing import Annotated, Any

from pydantic import BaseModel, Field

__all__ = ["compact_schema", "model_parameters", "with_parameters"]


def model_parameters(*models: type[BaseModel]) -> list[inspect.Parameter]:
    """One keyword-only parameter per field of `models`, with its type, bounds, default and description."""
    params: list[inspect.Parameter] = []
    for model in models:
        for name, info in model.model_fields.items():
            field = Field(description=info.description)
            default = inspect.Parameter.empty if info.is_required() else info.default
            if info.default_factory is not None:  # a fresh value per call, as the spec makes it
                field = Field(default_factory=info.default_factory, description=info.description)
                default = inspect.Parameter.empty
            annotation: Any = Annotated[(info.annotation, *info.metadata, field)]
            params.append(
                inspect.Parameter(
                    name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
                )
            )
    return params


def with_parameters(
    fn: Callable[..., Any], first: Iterable[inspect.Parameter], models: Iterable[type[BaseModel]]
) -> None:
    """Give `fn(ctx, **arguments)` the signature `(first..., <every field of models>)`, which the MCP SDK
    turns into the tool's input schema and argument validation."""
    params = [*first, *model_parameters(*models)]
    returns = typing.get_type_hints(fn).get("return", inspect.Signature.empty)
    fn.__signature__ = inspect.Signature(params, return_annotation=returns)  # type: ignore[attr-defined]


def compact_schema(schema: Any, *, descriptions: bool = True) -> Any:
    """The same JSON schema, shorter: no generated titles, `{"type": [T, "null"]}` for an optional
    scalar, no `"default": null`, and no descriptions unless asked. Every instance valid before stays
    valid, and no other."""
    if isinstance(schema, list):
        return [compact_schema(s, descriptions=descriptions) for s in schema]
    if not isinstance(schema, dict):
        return schema
    dropped = {"title"} if descriptions else {"title", "description"}
    out = {
        k: compact_schema(v, descriptions=descriptions)
        for k, v in schema.items()
        if not (k in dropped and isinstance(v, str))
    }
    for key in ("properties", "$defs"):  # a property may be named "title": keep its schema
        named = schema.get(key)
        if isinstance(named, dict):
            out[key] = {name: compact_schema(s, descriptions=descriptions) for name, s in named.items()}
    options = out.get("anyOf")
    if isinstance(options, list) and len(options) == 2 and {"type": "null"} in options:
        other = options[0] if options[1] == {"type": "null"} else options[1]
        if _mergeable(other, out):
            del out["anyOf"]
            out.update({k: v for k, v in other.items() if k != "type"})
            out["type"] = [other["type"], "null"]
            if "enum" in other:
                out["enum"] = [*other["enum"], None]
    if "default" in out and out["default"] is None:
        del out["default"]
    return out


def _mergeable(option: Any, around: dict[str, Any]) -> bool:
    """Whether `anyOf: [option, null]` can be written as one schema of type [T, "null"]: a plain typed
    schema (its keywords other than an enum apply to its own type only, so null still passes them)."""
    return (
        isinstance(option, dict)
        and isinstance(option.get("type"), str)
        and not {"$ref", "anyOf", "allOf", "oneOf", "const", "not"} & set(option)
        and not (set(option) - {"type"}) & set(around)
    )
