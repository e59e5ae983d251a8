"""Helpers shared by the benchmarks: percentiles and the last-line JSON."""

from __future__ import annotations

import json
import statistics
from typing import Any


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
