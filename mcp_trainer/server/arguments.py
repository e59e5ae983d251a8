"""Tools as an agent should meet them: an unknown argument is refused with the closest valid name, every
validation failure reads as a sentence (no pydantic wording, no links), and a result is structured JSON.

The MCP SDK validates a call's arguments against the model it derives from the tool's signature and
drops names it does not know. `CheckedArguments` keeps that model and its JSON-string pre-parsing, but
turns a refusal into a tool error (`isError`) whose text says what to change.

Tools publish complete input schemas and no output schema. Results still carry `structuredContent`
(the view model as JSON, views/) and the same JSON as text, then links to the trainer:// resources the
result is about (links.py). Output schemas were 60% of `tools/list` (33k of 54.5k characters), which an
agent's host sends to the model before any work; the view models document every field instead, and the
client no longer validates each result against a large schema.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools.base import Tool
from mcp.server.mcpserver.utilities.func_metadata import FuncMetadata
from mcp.types import CallToolResult, InputRequiredResult, TextContent
from pydantic import BaseModel, ValidationError

from mcp_trainer.errors import describe_validation_error, unknown_parameter
from mcp_trainer.server.actor import actor_of
from mcp_trainer.server.links import links_for
from mcp_trainer.server.schema import compact_schema
from mcp_trainer.service.audit import acting_as

__all__ = ["CheckedArguments", "make_tool"]

_REFUSED = "__refused__"  # never a parameter name: the SDK refuses names that start with "_"


class CheckedArguments(FuncMetadata):
    """Argument validation that refuses unknown names and explains every refusal in words."""

    def validate_arguments(self, arguments_to_validate: dict[str, Any]) -> dict[str, Any]:
        known = [info.alias or name for name, info in self.arg_model.model_fields.items()]
        problems = [unknown_parameter(name, known) for name in arguments_to_validate if name not in known]
        try:
            validated = super().validate_arguments(arguments_to_validate)
        except ValidationError as exc:
            problems.append(describe_validation_error(exc, known))
            validated = {}
        if problems:
            # The SDK hides the text of anything raised here but a ValidationError; the refusal is
            # raised from `call_fn` instead, where a ToolError's text reaches the caller.
            return {_REFUSED: "Invalid arguments: " + "; ".join(problems) + "."}
        return validated

    async def call_fn(
        self,
        fn: Callable[..., Any | Awaitable[Any]],
        fn_is_async: bool,
        arguments: dict[str, Any],
        arguments_to_pass_directly: dict[str, Any] | None = None,
    ) -> Any:
        if _REFUSED in arguments:
            raise ToolError(arguments[_REFUSED])
        passed = arguments_to_pass_directly or {}
        ctx = next((v for v in passed.values() if isinstance(v, Context)), None)
        if ctx is None:
            return await super().call_fn(fn, fn_is_async, arguments, arguments_to_pass_directly)
        # Whatever the tool changes through the service is recorded in the audit log as this caller's.
        with acting_as(actor_of(ctx, fn.__name__)):
            return await super().call_fn(fn, fn_is_async, arguments, arguments_to_pass_directly)

    def convert_result(self, result: Any) -> CallToolResult | InputRequiredResult:
        if isinstance(result, BaseModel) and not isinstance(result, CallToolResult | InputRequiredResult):
            data = result.model_dump(mode="json")
            return CallToolResult(
                content=[TextContent(type="text", text=result.model_dump_json(indent=2)), *links_for(result)],
                structured_content=data,
            )
        return super().convert_result(result)


def make_tool(fn: Callable[..., Any]) -> Tool:
    """The tool for `fn`: described by its docstring, its arguments checked as above, its input schema
    compact, its result structured JSON."""
    tool = Tool.from_function(fn, description=inspect.cleandoc(fn.__doc__ or ""), structured_output=False)
    checked = CheckedArguments(arg_model=tool.fn_metadata.arg_model)
    return tool.model_copy(update={"fn_metadata": checked, "parameters": compact_schema(tool.parameters)})
