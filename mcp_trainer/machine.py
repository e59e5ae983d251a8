"""The machine's CPU, memory, disk and GPU use, for queue status."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

import psutil
from pydantic import BaseModel

__all__ = ["GpuInfo", "MachineStatus", "available_cpus", "gpu_inventory", "machine_status"]


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class GpuInfo(BaseModel):
    index: int
    name: str
    memory_used_mb: float
    memory_total_mb: float
    utilization_percent: float | None = None


class MachineStatus(BaseModel):
    cpu_count: int
    cpu_percent: float
    memory_used_percent: float
    memory_available_mb: float
    disk_free_mb: float
    disk_used_percent: float
    gpus: list[GpuInfo]


def _gpus() -> list[GpuInfo]:
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except Exception:  # no driver, no GPU: the normal case on most machines
        return []
    out: list[GpuInfo] = []
    try:
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            mem: Any = pynvml.nvmlDeviceGetMemoryInfo(h)
            name = pynvml.nvmlDeviceGetName(h)
            util: float | None = None
            with contextlib.suppress(Exception):
                util = float(pynvml.nvmlDeviceGetUtilizationRates(h).gpu)
            out.append(
                GpuInfo(
                    index=i,
                    name=name.decode() if isinstance(name, bytes) else str(name),
                    memory_used_mb=round(mem.used / 2**20, 1),
                    memory_total_mb=round(mem.total / 2**20, 1),
                    utilization_percent=util,
                )
            )
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()
    return out


_gpu_cache: list[GpuInfo] | None = None
_cpu_measured_at: float | None = None
_CPU_WINDOW_S = 0.1


def _cpu_percent() -> float:
    """CPU use since the previous call; the first call (whose window psutil would report as 0.0) and a
    call right after another measure over a short window instead (blocking for it)."""
    global _cpu_measured_at
    now = time.monotonic()
    since_last = _cpu_measured_at is not None and now - _cpu_measured_at >= _CPU_WINDOW_S
    percent = float(psutil.cpu_percent(interval=None if since_last else _CPU_WINDOW_S))
    _cpu_measured_at = time.monotonic()
    return percent


def gpu_inventory() -> list[GpuInfo]:
    """This machine's GPUs through NVML (empty without a driver or a GPU; asked once when there is none)."""
    global _gpu_cache
    if _gpu_cache is None or _gpu_cache:
        _gpu_cache = _gpus()  # with no GPU, stop asking: nvmlInit costs milliseconds each time
    return _gpu_cache


def machine_status(disk_path: Path) -> MachineStatus:
    """A snapshot; CPU percent is measured since the previous call, or over 0.1 s (blocking) when there
    was none or it was only just now."""
    mem = psutil.virtual_memory()
    disk = psutil.disk_usage(str(disk_path))
    gpus = gpu_inventory()
    return MachineStatus(
        cpu_count=psutil.cpu_count() or 1,
        cpu_percent=_cpu_percent(),
        memory_used_percent=mem.percent,
        memory_available_mb=round(mem.available / 2**20, 1),
        disk_free_mb=round(disk.free / 2**20, 1),
        disk_used_percent=disk.percent,
        gpus=gpus,
    )
