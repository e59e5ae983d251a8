"""Calling tools through an MCP client in tests: a successful call's structured result, or an error's text."""

from __future__ import annotations

from typing import Any

from mcp import Client


async def call(client: Client, name: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
    result = await client.call_tool(name, args or {})
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


async def call_error(client: Client, name: str, args: dict[str, Any]) -> str:
    result = await client.call_tool(name, args)
    assert result.is_error
    text: str = result.content[0].text  # type: ignore[union-attr]
    return text
