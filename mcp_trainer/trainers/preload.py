"""Imported once by the forkserver so that every worker starts with the heavy modules already loaded."""

from __future__ import annotations

import mcp_trainer.trainers.predict
import mcp_trainer.trainers.sklearn_search  # noqa: F401
