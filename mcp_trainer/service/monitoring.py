"""Monitoring, the Python API's third part: alerts (engine/alerts.py) and the machine's recent history.

The owner raises and clears the alerts of the tasks it runs and keeps them in their task files, so every
server sharing the queue reads them. The machine's alerts and history come from this process's own
metrics samples: the owner takes one every 5 s; a server that does not execute takes one whenever it is
asked (at most every 5 s), so its history is as dense as it is asked.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from mcp_trainer.engine.alerts import AlertRules, machine_alerts
from mcp_trainer.engine.metrics import Sample
from mcp_trainer.engine.scheduler import Scheduler
from mcp_trainer.errors import InvalidInputError
from mcp_trainer.offload import off_loop
from mcp_trainer.records import Alert, Severity, TaskRecord, TaskStatus
from mcp_trainer.service.core import ServiceCore
from mcp_trainer.views.tasks import AlertsView, MetricPoint, iso

__all__ = ["MonitoringMethods", "alerts_of", "history_of"]

_POINTS = 20  # a history of at most this many points in a queue status


class MonitoringMethods(ServiceCore):
    """`alerts`: what to look at now."""

    async def alerts(self, min_severity: str = "info") -> AlertsView:
        """The machine's alerts and those of the running tasks, most severe first, at least `min_severity`
        (info, warning, critical)."""
        try:
            floor = Severity(min_severity)
        except ValueError:
            raise InvalidInputError(
                f"min_severity must be one of info, warning, critical (got {min_severity!r})."
            ) from None
        parts = self._parts()
        records = await off_loop(parts.store.live_now)
        samples = await off_loop(fresh_samples, parts.scheduler)
        found = [a for a in alerts_of(records, samples, self.alert_rules) if a.severity.rank >= floor.rank]
        counts = {s.value: 0 for s in Severity}
        for a in found:
            counts[a.severity.value] += 1
        return AlertsView(alerts=found, counts=counts, checked_at=iso(time.time()) or "")


def fresh_samples(scheduler: Scheduler) -> list[Sample]:
    """The metrics history. A server that does not execute samples only when asked: a new sample first
    when the latest is older than the sampling period. The owner's scheduler samples on its own, with
    its workers' pids (a sample without them here would count their CPU as other work). Blocking."""
    metrics = scheduler.metrics
    if not scheduler.is_owner and metrics.due():
        metrics.sample()
    return metrics.samples()


def alerts_of(records: Sequence[TaskRecord], samples: Sequence[Sample], rules: AlertRules) -> list[Alert]:
    """The machine's alerts, then those of running tasks; most severe first, then the oldest."""
    found = machine_alerts(samples, rules)
    found += [a for r in records if r.status is TaskStatus.RUNNING for a in r.alerts]
    return sorted(found, key=lambda a: (-a.severity.rank, a.since))


def history_of(samples: Sequence[Sample], now: float | None = None) -> list[MetricPoint]:
    """At most _POINTS points spread over the history, the latest included."""
    if not samples:
        return []
    now = time.time() if now is None else now
    step = max(1, -(-len(samples) // _POINTS))
    picked = list(samples)[::-1][::step][::-1]
    return [_point(s, now) for s in picked]


def _point(s: Sample, now: float) -> MetricPoint:
    util = [g.utilization_percent for g in s.gpus if g.utilization_percent is not None]
    mem = [100 * g.memory_used_mb / max(1.0, g.memory_total_mb) for g in s.gpus]
    return MetricPoint(
        ago_s=round(max(0.0, now - s.at), 1),
        cpu=s.cpu_percent,
        memory=s.memory_percent,
        disk=s.disk_percent,
        gpu=round(sum(util) / len(util), 1) if util else None,
        gpu_memory=round(sum(mem) / len(mem), 1) if mem else None,
    )
