"""A short history of the machine's use: CPU, memory, the disks of the queue and the models, and GPUs.

Every server samples it (about every 5 s, the last 10 minutes kept) in a worker thread; the owner's
scheduler reads the latest samples to decide whether anything new may start (admission.py), and the
queue status and the alerts read the history.
"""

from __future__ import annotations

import collections
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from mcp_trainer.machine import GpuInfo, available_cpus, gpu_inventory

__all__ = ["Machine", "MetricsHistory", "Sample"]

SAMPLE_EVERY_S = 5.0
KEEP = 120  # 10 minutes at one sample every 5 s
_MIN_WINDOW_S = 0.5  # a CPU figure over less time than this is noise


@dataclass(frozen=True)
class Sample:
    """The machine at one moment."""

    at: float
    cpu_percent: float  # since the previous sample, all CPUs
    memory_percent: float
    memory_available_gb: float
    disks: dict[str, tuple[float, float]]  # name -> (used percent, free GB)
    gpus: list[GpuInfo] = field(default_factory=list)
    own_cpu_percent: float = 0.0  # of cpu_percent, what this owner's workers (and their helpers) used
    window_s: float = 0.0  # the time cpu_percent was measured over
    own_rss_gb: dict[int, float] = field(default_factory=dict)  # worker pid -> resident GB of its tree

    @property
    def disk_percent(self) -> float:
        """The fullest of the disks watched."""
        return max((used for used, _ in self.disks.values()), default=0.0)

    @property
    def disk_free_gb(self) -> float:
        """The free space of that fullest disk."""
        fullest = max(self.disks.values(), default=(0.0, float("inf")))
        return fullest[1]

    @property
    def other_cpu_percent(self) -> float:
        """CPU use by anything but this owner's tasks (their own use is bounded by their claims)."""
        return max(0.0, self.cpu_percent - self.own_cpu_percent)


@dataclass(frozen=True)
class Machine:
    """What the machine has, from the latest metrics sample."""

    cpus: int
    memory_total_gb: float
    memory_available_gb: float
    gpus: Sequence[GpuInfo] = ()
    cpu_percent: float | None = None  # used by other work than this queue's tasks, over the last seconds
    memory_percent: float = 0.0
    disk_percent: float = 0.0
    disk_free_gb: float = float("inf")

    @classmethod
    def of(
        cls, cpus: int, memory_total_gb: float, sample: Sample | None, cpu_percent: float | None
    ) -> Machine:
        if sample is None:
            return cls(cpus=cpus, memory_total_gb=memory_total_gb, memory_available_gb=memory_total_gb)
        return cls(
            cpus=cpus,
            memory_total_gb=memory_total_gb,
            memory_available_gb=sample.memory_available_gb,
            gpus=tuple(sample.gpus),
            cpu_percent=cpu_percent,
            memory_percent=sample.memory_percent,
            disk_percent=sample.disk_percent,
            disk_free_gb=sample.disk_free_gb,
        )

    def describe(self) -> str:
        gpus = f", {len(self.gpus)} GPU(s)" if self.gpus else ", no GPU"
        return f"{self.cpus} cores, {self.memory_total_gb:.1f} GB of memory{gpus}"


class MetricsHistory:
    """Samples of the machine, newest last; safe to read from several threads."""

    def __init__(
        self,
        disks: dict[str, Path],
        *,
        every_s: float = SAMPLE_EVERY_S,
        keep: int = KEEP,
        gpus: Callable[[], list[GpuInfo]] = gpu_inventory,
    ) -> None:
        self.disks = disks
        self.every_s = every_s
        self.cpus = available_cpus()
        self.memory_total_gb = psutil.virtual_memory().total / 2**30
        self._gpus = gpus
        self._samples: collections.deque[Sample] = collections.deque(maxlen=keep)
        self._guard = threading.Lock()
        self._sampling = threading.Lock()  # one sample at a time (the owner's and a reader's may meet)
        # Its own CPU window (psutil.cpu_percent's is shared by every caller in the process).
        self._cpu_times = psutil.cpu_times()
        self._own_before: dict[int, float] = {}

    def sample(self, own: Sequence[int] = ()) -> Sample:
        """Take a sample now and keep it (blocking: reads /proc, the disks and NVML). `own`: the pids of
        this owner's workers, whose CPU use (with their descendants') is told apart."""
        with self._sampling:
            return self._sample(own)

    def _sample(self, own: Sequence[int]) -> Sample:
        mem = psutil.virtual_memory()
        disks: dict[str, tuple[float, float]] = {}
        for name, path in self.disks.items():
            try:
                usage = shutil.disk_usage(path)
            except OSError:
                continue
            disks[name] = (round(100 * usage.used / max(1, usage.total), 1), round(usage.free / 2**30, 2))
        busy, elapsed = self._cpu_since_last()
        window = elapsed / max(1, psutil.cpu_count() or 1)
        trees = {pid: _tree_use(pid) for pid in own}
        sample = Sample(
            at=time.time(),
            cpu_percent=busy,
            own_cpu_percent=self._own_since_last({pid: cpu for pid, (cpu, _) in trees.items()}, elapsed),
            own_rss_gb={pid: round(rss / 2**30, 3) for pid, (_, rss) in trees.items()},
            window_s=round(window, 2),
            memory_percent=float(mem.percent),
            memory_available_gb=round(mem.available / 2**30, 2),
            disks=disks,
            gpus=self._gpus(),
        )
        with self._guard:
            self._samples.append(sample)
        return sample

    def _cpu_since_last(self) -> tuple[float, float]:
        """Busy percent of all CPUs since the last sample, and the CPU-seconds that passed (all CPUs)."""
        now = psutil.cpu_times()
        before, self._cpu_times = self._cpu_times, now
        total = sum(now) - sum(before)
        idle = (now.idle + getattr(now, "iowait", 0.0)) - (before.idle + getattr(before, "iowait", 0.0))
        busy = round(100.0 * max(0.0, total - idle) / total, 1) if total > 0 else 0.0
        return busy, total

    def _own_since_last(self, seen: dict[int, float], elapsed: float) -> float:
        """Percent of all CPUs that the process trees seen (pid -> CPU-seconds so far) used since the last
        sample."""
        used = sum(max(0.0, seen[p] - self._own_before.get(p, seen[p])) for p in seen)
        self._own_before = seen
        return round(min(100.0, 100.0 * used / elapsed), 1) if elapsed > 0 else 0.0

    def machine_facts(self) -> Machine:
        """What the machine has, as far as what never changes goes (cores, memory, GPUs), with the latest
        use; GPUs from the latest sample (at most 5 s old in the owner), else asked of NVML now. Blocking."""
        latest = self.latest()
        gpus = latest.gpus if latest is not None else self._gpus()  # NVML costs ms a call: not every submit
        return Machine(
            cpus=self.cpus,
            memory_total_gb=self.memory_total_gb,
            memory_available_gb=latest.memory_available_gb if latest else self.memory_total_gb,
            gpus=tuple(gpus),
        )

    def due(self) -> bool:
        latest = self.latest()
        return latest is None or time.time() - latest.at >= self.every_s

    def latest(self) -> Sample | None:
        with self._guard:
            return self._samples[-1] if self._samples else None

    def samples(self, within_s: float | None = None) -> list[Sample]:
        """The samples of the last `within_s` seconds (all of them by default), oldest first."""
        with self._guard:
            kept = list(self._samples)
        if within_s is None:
            return kept
        since = time.time() - within_s
        return [s for s in kept if s.at >= since]

    def other_cpu_percent(self, within_s: float = 15.0) -> float | None:
        """CPU use by other work than this owner's tasks, averaged over the last `within_s` seconds (a
        worker starting up is a short spike)."""
        recent = [s for s in self.samples(within_s) if s.window_s >= _MIN_WINDOW_S]
        return None if not recent else sum(s.other_cpu_percent for s in recent) / len(recent)


def _tree_use(pid: int) -> tuple[float, int]:
    """CPU-seconds used so far by a process, its live descendants and the children they reaped; and the
    resident bytes of the live ones."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0, 0
    total, rss = 0.0, 0
    for proc in procs:
        try:
            t = proc.cpu_times()
            rss += proc.memory_info().rss
        except psutil.Error:
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total, rss
