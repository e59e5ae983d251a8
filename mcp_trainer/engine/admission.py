"""Whether a waiting task may start now, and with what: the scheduler's rules on resources, as pure
functions of a snapshot of the machine and of what running tasks have claimed.

- Cores: a task claims its `cpu_cores` (or, with none asked for, a fair share of the free cores, at least
  one); the claims of running tasks never add up past the machine's cores.
- Memory: the claims never add up past `memory_percent` of the machine's memory, and the memory free now
  must hold the request.
- GPUs: a whole-GPU request gets GPUs nobody else holds; a fraction below 1 shares a GPU only with other
  fractions, up to 1 in all; `gpu_memory_gb` must be free on each GPU it gets.
- Thresholds: nothing new starts while the machine's CPU, memory or disk use is past its threshold.
- A user may be capped to a number of running tasks.
When a task cannot start, the reason is a sentence for its status: `waiting for 2 cores; 1 free`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from mcp_trainer.engine.metrics import Machine
from mcp_trainer.machine import GpuInfo
from mcp_trainer.specs.resources import Grant, ResourceRequest

__all__ = ["Claims", "Machine", "Thresholds", "busy_reason", "decide", "never_fits"]


@dataclass(frozen=True)
class Thresholds:
    """Machine use past which nothing new starts (percent). The CPU's counts what runs beside this queue's
    tasks (theirs is bounded by their claims); a disk past its threshold holds starts only while it has
    less than `disk_free_gb` free (90% of a large disk can leave plenty)."""

    cpu_percent: float = 90.0
    memory_percent: float = 85.0
    disk_percent: float = 90.0
    disk_free_gb: float = 20.0


@dataclass
class Claims:
    """What running tasks hold."""

    cores: int = 0
    memory_gb: float = 0.0
    gpu_shares: dict[int, float] = field(default_factory=dict)  # GPU index -> share held (1.0: whole)
    per_user: dict[str, int] = field(default_factory=dict)  # user_id -> running tasks

    @classmethod
    def of(cls, held: Iterable[tuple[str | None, Grant]]) -> Claims:
        claims = cls()
        for user, grant in held:
            claims.add(user, grant)
        return claims

    def add(self, user: str | None, grant: Grant) -> None:
        self.cores += grant.cpu_cores
        self.memory_gb += grant.memory_gb
        for index in grant.gpus:
            self.gpu_shares[index] = self.gpu_shares.get(index, 0.0) + grant.gpu_share
        if user is not None:
            self.per_user[user] = self.per_user.get(user, 0) + 1


def never_fits(request: ResourceRequest, machine: Machine) -> str | None:
    """Why no part of this machine could ever run `request` (None when it could)."""
    if request.cpu_cores is not None and request.cpu_cores > machine.cpus:
        return f"cpu_cores={request.cpu_cores}"
    if request.memory_gb > machine.memory_total_gb:
        return f"memory_gb={request.memory_gb:g}"
    whole = int(request.gpu_count) if request.gpu_count >= 1 else (1 if request.gpu_count else 0)
    if whole > len(machine.gpus):
        return f"gpu_count={request.gpu_count:g}"
    if request.gpu_memory_gb is not None and whole:
        largest = max(g.memory_total_mb for g in machine.gpus) / 1024
        if request.gpu_memory_gb > largest:
            return f"gpu_memory_gb={request.gpu_memory_gb:g} (the largest GPU has {largest:.1f} GB)"
    return None


def busy_reason(machine: Machine, thresholds: Thresholds) -> str | None:
    """Why nothing new may start now because the machine is busy (None when it is not)."""
    if machine.cpu_percent is not None and machine.cpu_percent > thresholds.cpu_percent:
        return (
            f"the machine's CPU is {machine.cpu_percent:.0f}% busy with other work "
            f"(starts below {thresholds.cpu_percent:g}%)"
        )
    if machine.memory_percent > thresholds.memory_percent:
        return f"memory is {machine.memory_percent:.0f}% used (starts below {thresholds.memory_percent:g}%)"
    if machine.disk_percent > thresholds.disk_percent and machine.disk_free_gb < thresholds.disk_free_gb:
        return (
            f"a disk is {machine.disk_percent:.0f}% full with {machine.disk_free_gb:.1f} GB free "
            f"(starts below {thresholds.disk_percent:g}% or above {thresholds.disk_free_gb:g} GB free)"
        )
    return None


def decide(
    request: ResourceRequest,
    machine: Machine,
    claims: Claims,
    *,
    fair_cores: int,
    thresholds: Thresholds | None = None,
) -> Grant | str:
    """A grant for `request` now, or why it must wait. `fair_cores` is the share of the cores a task
    that asked for none gets (the cores divided among the tasks running and waiting)."""
    thresholds = thresholds or Thresholds()
    free_cores = machine.cpus - claims.cores
    if request.cpu_cores is None:
        if free_cores < 1:
            return f"waiting for a core; all {machine.cpus} are claimed"
        cores = max(1, min(free_cores, fair_cores))
    elif request.cpu_cores > free_cores:
        cores_word = "core" if request.cpu_cores == 1 else "cores"
        return f"waiting for {request.cpu_cores} {cores_word}; {max(0, free_cores)} free"
    else:
        cores = request.cpu_cores
    room = machine.memory_total_gb * thresholds.memory_percent / 100 - claims.memory_gb
    free_memory = min(room, machine.memory_available_gb)
    if request.memory_gb > free_memory:
        return f"waiting for {request.memory_gb:g} GB of memory; {max(0.0, free_memory):.1f} GB free"
    gpus = _gpus_for(request, machine, claims)
    if isinstance(gpus, str):
        return gpus
    share = 0.0 if not gpus else (request.gpu_count if request.gpu_count < 1 else 1.0)
    return Grant(cpu_cores=cores, memory_gb=request.memory_gb, gpus=gpus, gpu_share=share)


def _gpus_for(request: ResourceRequest, machine: Machine, claims: Claims) -> list[int] | str:
    if not request.gpu_count:
        return []
    need_mb = None if request.gpu_memory_gb is None else request.gpu_memory_gb * 1024

    def memory_ok(gpu: GpuInfo) -> bool:
        return need_mb is None or gpu.memory_total_mb - gpu.memory_used_mb >= need_mb

    if request.gpu_count < 1:  # a fraction: pack it beside other fractions first
        fits = [
            g
            for g in machine.gpus
            if claims.gpu_shares.get(g.index, 0.0) + request.gpu_count <= 1.0 + 1e-9 and memory_ok(g)
        ]
        if not fits:
            return f"waiting for {request.gpu_count:g} of a GPU; none has that much free"
        best = max(fits, key=lambda g: claims.gpu_shares.get(g.index, 0.0))
        return [best.index]
    free = [g.index for g in machine.gpus if claims.gpu_shares.get(g.index, 0.0) == 0.0 and memory_ok(g)]
    want = int(request.gpu_count)
    if len(free) < want:
        return f"waiting for {want} free GPU(s); {len(free)} free"
    return free[:want]
