"""Helpers shared by the benchmarks: percentiles, the last-line JSON, a warmed-up service."""

from __future__ import annotations

import json
import statistics
import time
from typing import Any

import anyio

from mcp_trainer import AdmissionConfig, Thresholds, TrainingService

# The plain runs a benchmark times beside the queue are "other work" to the queue's admission thresholds
# (a 2-process baseline alone is ~100% CPU on 2 cores), which would hold the queue's next start until the
# 15 s average falls: these benchmarks measure the machinery, not the thresholds, so they turn them off.
UNGATED = AdmissionConfig(thresholds=Thresholds(100.0, 100.0, 100.0))


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of `values`, in the same unit."""
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def summary_ms(values_s: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values_s]
    return {
        "p50_ms": round(pct(ms, 50), 2),
        "p99_ms": round(pct(ms, 99), 2),
        "mean_ms": round(statistics.mean(ms), 2),
    }


def emit(figures: dict[str, Any]) -> None:
    """Print the figures as the last line, one JSON object."""
    print(json.dumps(figures, sort_keys=True))


async def warm_up(svc: TrainingService) -> None:
    """Wait until `svc` owns its queue, then start its forkserver and fork one no-op process, so that no
    timed run pays for either."""
    t0 = time.perf_counter()
    while not svc.is_owner:
        await anyio.sleep(0.01)
    await svc.warm_up()
    print(
        "warm-up: waited for svc.is_owner, then ran svc.warm_up() "
        f"(forkserver started, one no-op process forked): {time.perf_counter() - t0:.2f} s, "
        "not timed below",
        flush=True,
    )
