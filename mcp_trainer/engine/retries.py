"""How a failed attempt is retried, by the kind of failure; the plan is written into the task's status.

- worker_lost (killed, crashed) and cuda_error: run again in a fresh process.
- out_of_memory: a search runs again with half its parallel trials (each holds a copy of the data); a
  fine-tune is not retried, its loop having already halved its micro-batch down to the smallest.
- disk_full: wait for space; the attempt does not count (at most MAX_DISK_WAITS such waits).
- data_error, divergence, timeout, internal, script_error (a script task's script failed): never
  retried; the input or the code must change first.
Retries wait with exponential backoff and jitter (1 s, 2 s, 4 s, ... at most 5 minutes, ±25%), and the time
of the next attempt is in the task file, so a restart keeps it.
"""

from __future__ import annotations

import random
import time
from typing import Any

from mcp_trainer.records import ErrorKind, TaskRecord, TaskStatus
from mcp_trainer.specs.tabular import TabularSpec

__all__ = ["MAX_DISK_WAITS", "backoff_s", "retry_or_fail"]

BASE_DELAY_S = 1.0
MAX_DELAY_S = 300.0
DISK_WAIT_S = 60.0
MAX_DISK_WAITS = 10
_JITTER = 0.25


def backoff_s(attempt: int, rng: random.Random | None = None) -> float:
    """The wait before the attempt after `attempt` (1-based): doubling from 1 s, capped, with jitter."""
    base = min(MAX_DELAY_S, BASE_DELAY_S * 2.0 ** max(0, attempt - 1))
    jitter: float = (rng or random.Random()).uniform(1 - _JITTER, 1 + _JITTER)
    return base * jitter


def retry_or_fail(r: TaskRecord, note: str, now: float | None = None) -> None:
    """After a failed attempt (`r.error` set): plan the next one, or fail the task."""
    assert r.error is not None
    now = time.time() if now is None else now
    kind = r.error.kind
    if kind is ErrorKind.DISK_FULL:
        _wait_for_disk(r, note, now)
        return
    if not kind.is_retryable() or r.attempts >= r.max_attempts:
        _fail(r, note)
        return
    change = ""
    if kind is ErrorKind.OUT_OF_MEMORY:
        smaller = _smaller(r)
        if smaller is None:
            r.error.hint = (r.error.hint or "") + " Not retried: there is nothing smaller to try."
            r.transition(TaskStatus.FAILED, note)
            return
        r.overrides.update(smaller)
        change = " with " + ", ".join(f"{k}={v}" for k, v in smaller.items())
    delay = backoff_s(r.attempts)
    r.next_attempt_at = now + delay
    r.retry_plan = (
        f"attempt {r.attempts + 1} of {r.max_attempts} in {delay:.0f} s{change}, after {kind.value}"
    )
    r.transition(TaskStatus.RETRYING, note)


def _fail(r: TaskRecord, note: str) -> None:
    assert r.error is not None
    if r.error.kind.is_retryable():
        r.error.hint = f"Gave up after {r.attempts} attempts. Fix the cause, then call retry_task."
    r.transition(TaskStatus.FAILED, note)


def _wait_for_disk(r: TaskRecord, note: str, now: float) -> None:
    assert r.error is not None
    r.disk_waits += 1
    if r.disk_waits > MAX_DISK_WAITS:
        r.error.hint = (
            f"The disk stayed full through {MAX_DISK_WAITS} waits. Free space, then call retry_task."
        )
        r.transition(TaskStatus.FAILED, note)
        return
    r.attempts = max(0, r.attempts - 1)  # a full disk is not the task's fault: no attempt is burned
    r.next_attempt_at = now + DISK_WAIT_S
    r.retry_plan = (
        f"waiting for disk space: the next try in {DISK_WAIT_S:.0f} s does not count as an attempt "
        f"(wait {r.disk_waits} of {MAX_DISK_WAITS})"
    )
    r.transition(TaskStatus.RETRYING, note)


def _smaller(r: TaskRecord) -> dict[str, Any] | None:
    """The change that makes the next attempt of an out-of-memory task smaller, if there is one."""
    if not isinstance(r.spec, TabularSpec):
        return None  # a fine-tune's loop already halved its micro-batch down to the smallest
    current = r.overrides.get("n_parallel_trials") or r.spec.n_parallel_trials
    if current is None:
        current = r.grant.cpu_cores if r.grant is not None else 1
    if current <= 1:
        return None
    return {"n_parallel_trials": int(current) // 2}
