"""Imported once by the forkserver so that every worker starts with the heavy modules already loaded.

That includes matplotlib (through the report plots): ~0.4 s to import here, paid once at start-up rather
than by every task. It also sets BLAS to one thread here, before any worker is forked (threads.py says
why it must happen in this process), then runs a tiny task's code paths once (warm.py).
"""

from __future__ import annotations

import gc

import mcp_trainer.trainers.tabular.predict
import mcp_trainer.trainers.tabular.report
import mcp_trainer.trainers.tabular.trainer  # noqa: F401
from mcp_trainer.trainers.tabular.warm import warm_up
from mcp_trainer.trainers.threads import one_blas_thread, remember_thread_pools

one_blas_thread()
warm_up()  # after BLAS is set to one thread: the first calls' costs, paid here once (warm.py)
remember_thread_pools()  # every library the tabular trainers use is loaded by now
# What is loaded now lives as long as every worker: keep the workers' collector off it, so that a worker's
# collections neither walk it nor write to its pages (each written page is copied into the worker).
gc.freeze()
