"""Waiting in a test for a condition, with a bounded timeout (never a bare sleep as synchronisation)."""

from __future__ import annotations

import inspect
from typing import Any

import anyio

__all__ = ["wait_until"]


async def wait_until(predicate: Any, timeout: float = 60.0, interval: float = 0.05) -> None:
    """Return once `predicate()` (a value or an awaitable) is true; fail past `timeout` seconds."""
    with anyio.fail_after(timeout):
        while True:
            outcome = predicate()
            if await outcome if inspect.isawaitable(outcome) else outcome:
                return
            await anyio.sleep(interval)
