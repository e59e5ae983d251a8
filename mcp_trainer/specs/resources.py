"""What a task claims of the machine while it runs, and what it was given.

A caller may ask for `cpu_cores`, `memory_gb`, `gpu_count` (a whole number of GPUs, or a fraction below 1
to share one) and `gpu_memory_gb` on any submit tool (`SubmitOptions`); what it leaves out gets a default by
task type (service/resources.py). The resolved request is stored with the task (`ResourceRequest`); the
scheduler starts the task only when the machine has that much free and records what it granted (`Grant`):
the cores its thread pools are sized to and the GPUs it is pinned to.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Grant", "ResourceRequest"]


class ResourceRequest(BaseModel):
    """A task's claim on the machine, defaults applied."""

    model_config = ConfigDict(extra="forbid")

    cpu_cores: Annotated[int, Field(ge=1)] | None = Field(
        default=None,
        description="cores to claim; null: a fair share of the free cores when it starts (at least 1)",
    )
    memory_gb: Annotated[float, Field(ge=0)] = Field(description="memory to claim, in GB")
    gpu_count: Annotated[float, Field(ge=0)] = Field(
        default=0.0, description="GPUs: whole, or a fraction of one"
    )
    gpu_memory_gb: Annotated[float, Field(gt=0)] | None = Field(
        default=None, description="free memory needed on each GPU it gets, in GB"
    )

    def describe(self) -> str:
        """`2 cores, 1.5 GB, 1 GPU`, as a message names a request."""
        cores = "a share of the cores" if self.cpu_cores is None else _plural(self.cpu_cores, "core")
        parts = [cores, f"{self.memory_gb:g} GB"]
        if self.gpu_count:
            parts.append(f"{self.gpu_count:g} GPU" + ("s" if self.gpu_count > 1 else ""))
        return ", ".join(parts)


class Grant(BaseModel):
    """What the scheduler gave an attempt: its cores, memory and GPUs (indexes on this machine)."""

    model_config = ConfigDict(extra="forbid")

    cpu_cores: Annotated[int, Field(ge=1)]
    memory_gb: Annotated[float, Field(ge=0)]
    gpus: list[int] = Field(default_factory=list)
    gpu_share: float = 0.0  # the fraction of each GPU in `gpus` it holds (1.0: whole GPUs)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")
