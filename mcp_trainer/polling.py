"""The one way this package waits on state that lives in files or other processes: bounded polling."""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Awaitable, Callable

import anyio

__all__ = ["poll_until"]

Check = Callable[[], bool] | Callable[[], Awaitable[bool]]


async def poll_until(check: Check, *, interval_s: float, timeout_s: float | None = None) -> bool:
    """Call `check` (sync or async) every `interval_s` until it returns True; returns True then, or False
    once `timeout_s` has passed (None: no limit). The first call is immediate."""
    deadline = math.inf if timeout_s is None else time.monotonic() + timeout_s
    while True:
        outcome = check()
        if inspect.isawaitable(outcome):
            outcome = await outcome
        if outcome:
            return True
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        await anyio.sleep(min(interval_s, left))
