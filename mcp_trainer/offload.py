"""The rule that keeps tool calls fast: blocking file I/O never runs on the event loop.

Task files, model directories and locks are read and written by blocking calls (the store takes a
queue-wide flock, another server may be scanning 10,000 files). Async code runs every such call through
`off_loop`, in a worker thread, so one slow disk operation never stalls the other calls in flight.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import anyio

__all__ = ["off_loop"]

T = TypeVar("T")


async def off_loop(fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)` in a worker thread; the caller's event loop goes on meanwhile."""
    return await anyio.to_thread.run_sync(fn, *args)
