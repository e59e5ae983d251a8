"""Alerts: what a person or an agent should look at, from what the owner sees of its running tasks and
from the machine's metrics history (metrics.py). Pure functions over snapshots, plus `TaskWatch`, the
owner's in-memory memory of one task's progress.

Per running task: stalled (no progress for `stalled_after_s`), overdue (the current trial or step has
taken far longer than they usually take), loss_nan and loss_spike (a fine-tune's training loss), and
memory_high (its processes' resident memory near or past its `memory_gb` claim).
For the machine: memory_high, disk_full and disk_filling (free space falling fast enough to run out
within `disk_fill_within_s`), gpu_memory_high.
"""

from __future__ import annotations

import collections
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mcp_trainer.engine.metrics import Sample
from mcp_trainer.records import Alert, Progress, Severity

__all__ = ["AlertRules", "TaskWatch", "machine_alerts", "merge", "task_alerts"]

_LOSSES_KEPT = 20  # recent losses a spike is measured against
_MIN_LOSSES = 5
_MIN_INTERVALS = 3


@dataclass(frozen=True)
class AlertRules:
    """When an alert is raised."""

    stalled_after_s: float = 600.0  # no progress for 10 minutes; critical after three times as long
    overdue_ratio: float = 4.0  # the current trial or step has taken this many times the usual ...
    overdue_min_s: float = 120.0  # ... and at least this long
    loss_spike_ratio: float = 4.0  # a training loss this many times the median of the recent ones
    task_memory_ratio: float = 0.9  # of its memory claim (critical past the claim)
    machine_memory_percent: float = 92.0  # critical past 97
    disk_percent: float = 95.0  # a watched disk this full (critical under 1 GB free)
    disk_fill_within_s: float = 1800.0  # free space falling so fast it runs out within this
    gpu_memory_percent: float = 95.0


class TaskWatch:
    """What the owner saw of one running task's progress: when it last moved, how long moves usually take,
    and its recent training losses."""

    def __init__(self, now: float) -> None:
        self.changed_at = now
        self.intervals: collections.deque[float] = collections.deque(maxlen=20)
        self._key: tuple[object, ...] | None = None
        self.losses: collections.deque[float] = collections.deque(maxlen=_LOSSES_KEPT)
        self.latest_loss: float | None = None
        self.unit = "step"

    def observe(self, progress: Progress, now: float) -> None:
        training = progress.training
        key = (
            progress.phase,
            progress.trial,
            training.step if training else None,
            round(progress.percent, 1),
        )
        if key == self._key:
            return
        if self._key is not None and key[:3] != self._key[:3]:  # a trial or step ended, not only a percent
            self.intervals.append(now - self.changed_at)
        self._key = key
        self.changed_at = now
        self.unit = "trial" if progress.trial is not None and training is None else "step"
        if training is not None and training.loss is not None:
            if self.latest_loss is not None and math.isfinite(self.latest_loss):
                self.losses.append(self.latest_loss)
            self.latest_loss = training.loss


def task_alerts(
    task_id: str,
    watch: TaskWatch,
    *,
    rss_gb: float | None,
    memory_claim_gb: float,
    now: float,
    rules: AlertRules,
) -> list[Alert]:
    """The alerts of one running task now."""
    out: list[Alert] = []

    def add(kind: str, severity: Severity, message: str) -> None:
        out.append(Alert(kind=kind, severity=severity, message=message, since=now, task_id=task_id))

    quiet = now - watch.changed_at
    if quiet >= rules.stalled_after_s:
        severe = Severity.CRITICAL if quiet >= 3 * rules.stalled_after_s else Severity.WARNING
        add("stalled", severe, f"no progress for {_duration(quiet)}")
    elif len(watch.intervals) >= _MIN_INTERVALS:
        usual = statistics.median(watch.intervals)
        if quiet >= max(rules.overdue_min_s, rules.overdue_ratio * usual):
            add(
                "overdue",
                Severity.WARNING,
                f"the current {watch.unit} has taken {_duration(quiet)}; "
                f"they usually take {_duration(usual)}",
            )
    loss = watch.latest_loss
    if loss is not None and not math.isfinite(loss):
        add("loss_nan", Severity.CRITICAL, f"the training loss is {loss}: training diverged")
    elif loss is not None and len(watch.losses) >= _MIN_LOSSES:
        usual_loss = statistics.median(watch.losses)
        if usual_loss > 0 and loss > rules.loss_spike_ratio * usual_loss:
            add(
                "loss_spike",
                Severity.WARNING,
                f"the training loss jumped to {loss:.4g}, {loss / usual_loss:.1f}x its recent median "
                f"{usual_loss:.4g}: a lower learning_rate may help",
            )
    if rss_gb is not None and memory_claim_gb > 0 and rss_gb >= rules.task_memory_ratio * memory_claim_gb:
        over = rss_gb > memory_claim_gb
        add(
            "memory_high",
            Severity.CRITICAL if over else Severity.WARNING,
            f"its processes use {rss_gb:.2f} GB of memory, {'over' if over else 'near'} the "
            f"{memory_claim_gb:g} GB it claimed (memory_gb); ask for more, or lower batch_size or "
            "n_parallel_trials",
        )
    return out


def machine_alerts(samples: Sequence[Sample], rules: AlertRules) -> list[Alert]:
    """The machine's alerts from its metrics history (oldest first); `since` is the first sample of the
    latest run of samples in that state."""
    if not samples:
        return []
    latest = samples[-1]
    out: list[Alert] = []

    def add(kind: str, severity: Severity, message: str, holds: Callable[[Sample], bool]) -> None:
        out.append(Alert(kind=kind, severity=severity, message=message, since=_since(samples, holds)))

    mem = latest.memory_percent
    if mem >= rules.machine_memory_percent:
        critical = mem >= min(99.0, rules.machine_memory_percent + 5)
        add(
            "memory_high",
            Severity.CRITICAL if critical else Severity.WARNING,
            f"the machine's memory is {mem:.0f}% used ({latest.memory_available_gb:.1f} GB available)",
            lambda s: s.memory_percent >= rules.machine_memory_percent,
        )
    for name, (used, free_gb) in sorted(latest.disks.items()):
        _disk_alerts(name, used, free_gb, samples, rules, add)
    for gpu in latest.gpus:
        share = _gpu_memory_percent(latest, gpu.index)
        if share >= rules.gpu_memory_percent:
            index = gpu.index
            add(
                "gpu_memory_high",
                Severity.WARNING,
                f"GPU {index} ({gpu.name}) has {share:.0f}% of its memory in use",
                _gpu_memory_over(index, rules.gpu_memory_percent),
            )
    return out


def _gpu_memory_over(index: int, percent: float) -> Callable[[Sample], bool]:
    return lambda s: _gpu_memory_percent(s, index) >= percent


def _gpu_memory_percent(sample: Sample, index: int) -> float:
    return next(
        (100 * g.memory_used_mb / max(1.0, g.memory_total_mb) for g in sample.gpus if g.index == index), 0.0
    )


def _disk_alerts(
    name: str,
    used: float,
    free_gb: float,
    samples: Sequence[Sample],
    rules: AlertRules,
    add: Callable[[str, Severity, str, Callable[[Sample], bool]], None],
) -> None:
    def free_of(s: Sample) -> float | None:
        disk = s.disks.get(name)
        return None if disk is None else disk[1]

    if used >= rules.disk_percent or free_gb < 1.0:
        add(
            "disk_full",
            Severity.CRITICAL if free_gb < 1.0 else Severity.WARNING,
            f"the {name} disk is {used:.0f}% full ({free_gb:.2f} GB free)",
            lambda s: (s.disks.get(name) or (0.0, math.inf))[0] >= rules.disk_percent,
        )
        return
    rate = _falling_gb_per_s([(s.at, f) for s in samples if (f := free_of(s)) is not None])
    if rate is not None and rate > 0 and free_gb / rate <= rules.disk_fill_within_s:
        add(
            "disk_filling",
            Severity.WARNING,
            f"the {name} disk fills in about {_duration(free_gb / rate)} at the current rate "
            f"({free_gb:.2f} GB free, {rate * 60 * 1024:.0f} MB a minute)",
            lambda s: True,
        )


def _falling_gb_per_s(points: list[tuple[float, float]]) -> float | None:
    """How fast free space falls (GB/s, least squares over the history), None over less than a minute."""
    if len(points) < 3 or points[-1][0] - points[0][0] < 60:
        return None
    mean_t = sum(t for t, _ in points) / len(points)
    mean_f = sum(f for _, f in points) / len(points)
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return None
    slope = sum((t - mean_t) * (f - mean_f) for t, f in points) / var
    return -slope


def _since(samples: Sequence[Sample], holds: Callable[[Sample], bool]) -> float:
    since = samples[-1].at
    for sample in reversed(samples):
        if not holds(sample):
            break
        since = sample.at
    return since


def merge(before: Sequence[Alert], now: Sequence[Alert]) -> list[Alert]:
    """`now`, each alert keeping the `since` of the same alert (kind, task) raised before."""
    first = {(a.kind, a.task_id): a.since for a in before}
    return [a.model_copy(update={"since": first.get((a.kind, a.task_id), a.since)}) for a in now]


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
