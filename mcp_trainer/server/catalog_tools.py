"""The MCP tool that describes what can be trained: families, their search spaces, scorers, datasets."""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver.tools.base import Tool
from pydantic import BaseModel

from mcp_trainer.server.arguments import make_tool
from mcp_trainer.specs.catalog import describe_catalog

__all__ = ["SearchSpaces", "tools"]


class SearchSpaces(BaseModel):
    families: dict[str, Any]
    task_types: dict[str, Any]
    scoring: dict[str, Any]
    datasets: dict[str, Any]


async def get_search_spaces() -> SearchSpaces:
    """The model families and the hyperparameters each one tunes with their ranges, the task types, the
    scorers per kind, and the datasets bundled with scikit-learn. Use it to choose `params` (fixed
    values), `search_space` (narrowed ranges), `scoring` or a `data_source` to try."""
    return SearchSpaces.model_validate(describe_catalog())


def tools() -> list[Tool]:
    return [make_tool(get_search_spaces)]
