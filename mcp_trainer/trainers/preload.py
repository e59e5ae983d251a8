"""Imported once by the forkserver so that every worker starts with the heavy modules already loaded.

That includes matplotlib (through the report plots): ~0.4 s to import here, paid once at start-up rather
than by every task. It also sets BLAS to one thread here, before any worker is forked (threads.py says
why it must happen in this process).
"""

from __future__ import annotations

import mcp_trainer.trainers.tabular.predict
import mcp_trainer.trainers.tabular.report
import mcp_trainer.trainers.tabular.trainer  # noqa: F401
from mcp_trainer.trainers.threads import one_blas_thread

one_blas_thread()
