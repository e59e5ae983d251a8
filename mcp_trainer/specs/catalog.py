"""Everything a caller may choose from, as plain data: what the `get_search_spaces` tool returns."""

from __future__ import annotations

from typing import Any

from mcp_trainer.specs.sources import BUNDLED, BUNDLED_PREFIX
from mcp_trainer.specs.spaces import describe_spaces
from mcp_trainer.specs.tabular import CLASSIFICATION_SCORING, REGRESSION_SCORING

__all__ = ["describe_catalog"]


def describe_catalog() -> dict[str, Any]:
    """The model families and their search spaces, the task types, the scorers per kind (the first is
    the default), and the bundled datasets with what they predict."""
    return {
        **describe_spaces(),
        "scoring": {"classification": list(CLASSIFICATION_SCORING), "regression": list(REGRESSION_SCORING)},
        "datasets": {
            f"{BUNDLED_PREFIX}{name}": {
                "kind": d.kind,
                "targets": list(d.targets),
                "rows": d.rows,
                "features": d.features,
            }
            for name, d in BUNDLED.items()
        },
    }
