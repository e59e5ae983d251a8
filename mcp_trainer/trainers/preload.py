"""Imported once by the forkserver so that every worker starts with the heavy modules already loaded.

That includes matplotlib (through the report plots): ~0.4 s to import here, paid once at start-up rather
than by every task.
"""

from __future__ import annotations

import mcp_trainer.trainers.predict
import mcp_trainer.trainers.reports
import mcp_trainer.trainers.sklearn_search  # noqa: F401
