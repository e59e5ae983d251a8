"""A submitted task's resource request: the caller's `cpu_cores`, `memory_gb`, `gpu_count` and
`gpu_memory_gb`, defaults by task type for what it left out, and a refusal in words for a request this
machine could never meet (blocking: it reads file sizes and asks NVML; run it in a thread).

Defaults: a search claims its `n_parallel_trials` cores when it names them, else a fair share of the free
cores when it starts; memory comes from the size of the data (scikit-learn) or of the model's weights
(fine-tunes); a fine-tune gets one GPU when the machine has any, and scikit-learn never a GPU. A script
(whose needs nothing here can tell) claims a fair share of the cores, 1 GB (2 GB with a GPU), and a GPU
only when it asks for one. The tasks that train nothing (preprocess, evaluate, cleanup) claim one core and
little memory (pandas' frame of their data), and never a GPU.
"""

from __future__ import annotations

from pathlib import Path

from mcp_trainer.engine.admission import never_fits
from mcp_trainer.engine.metrics import Machine
from mcp_trainer.errors import InvalidInputError
from mcp_trainer.specs import AnySpec
from mcp_trainer.specs.cleanup import CleanupSpec
from mcp_trainer.specs.finetune import FinetuneSpec
from mcp_trainer.specs.options import SubmitOptions
from mcp_trainer.specs.resources import ResourceRequest
from mcp_trainer.specs.script import ScriptSpec
from mcp_trainer.specs.sources import parse_source
from mcp_trainer.specs.tabular import TabularSpec

__all__ = ["resolve_request"]

_GB = 2**30
_WEIGHTS = (".safetensors", ".bin", ".pt", ".pth")


def resolve_request(spec: AnySpec, options: SubmitOptions, machine: Machine) -> ResourceRequest:
    """The request to store with the task; InvalidInputError for one that is inconsistent or that no part
    of `machine` could ever meet."""
    finetune = isinstance(spec, FinetuneSpec)
    cores = options.cpu_cores
    parallel = spec.n_parallel_trials if isinstance(spec, TabularSpec) else None
    if cores is None:  # None: a fair share of the free cores when it starts
        cores = parallel if isinstance(spec, TabularSpec | FinetuneSpec | ScriptSpec) else 1
    elif parallel is not None and parallel > cores:
        raise InvalidInputError(
            f"n_parallel_trials={parallel} runs {parallel} processes but cpu_cores={cores}.",
            f"Ask for cpu_cores={parallel}, or lower n_parallel_trials to {cores}.",
        )
    gpus = options.gpu_count
    if gpus is None:
        gpus = 1.0 if finetune and machine.gpus else 0.0
    kind = "scikit-learn" if isinstance(spec, TabularSpec) else spec.task_type
    _check_gpus(gpus, options, finetune or isinstance(spec, ScriptSpec), kind)
    request = ResourceRequest(
        cpu_cores=cores,
        memory_gb=options.memory_gb if options.memory_gb is not None else _default_memory_gb(spec, gpus),
        gpu_count=gpus,
        gpu_memory_gb=options.gpu_memory_gb,
    )
    impossible = never_fits(request, machine)
    if impossible is not None:
        raise InvalidInputError(
            f"This machine has {machine.describe()}: {impossible} can never be met.",
            "Ask for what the machine has (leave the option out for its default).",
        )
    return request


def _check_gpus(gpus: float, options: SubmitOptions, may_use_gpus: bool, kind: str) -> None:
    if gpus > 1 and not gpus.is_integer():
        raise InvalidInputError(
            f"gpu_count={gpus:g}: above 1 it counts whole GPUs.", "Use 1, 2, ... or a fraction below 1."
        )
    if gpus and not may_use_gpus:
        raise InvalidInputError(
            f"{kind} tasks run on CPUs only: gpu_count would claim a GPU they never use.",
            "Leave gpu_count out (or 0) for this task type.",
        )
    if options.gpu_memory_gb is not None and not gpus:
        raise InvalidInputError(
            "gpu_memory_gb needs a GPU.", "Give gpu_count too, or leave gpu_memory_gb out."
        )


def _default_memory_gb(spec: AnySpec, gpus: float) -> float:
    """About what a task of this size needs: pandas' frame and the folds' copies for scikit-learn (about ten
    times the file); for a fine-tune the worker's torch and transformers (~0.3-0.6 GB resident), the weights,
    gradients and optimizer state (a LoRA far less), and the CUDA context on a GPU (~1 GB of host memory)."""
    if isinstance(spec, ScriptSpec):
        return 2.0 if gpus else 1.0
    if isinstance(spec, FinetuneSpec):
        weights = _size(Path(spec.model_path), _WEIGHTS)
        factor = 2.0 if spec.method == "lora" else 6.0
        return round(1.0 + factor * weights / _GB + (1.0 if gpus else 0.0), 1)
    if isinstance(spec, CleanupSpec):
        return 0.25
    source = parse_source(spec.data_source)
    data = _size(source.path, None) if source.path is not None else 0
    return round(0.5 + 10 * data / _GB, 1)


def _size(path: Path, suffixes: tuple[str, ...] | None) -> int:
    try:
        if path.is_file():
            return path.stat().st_size
        return sum(p.stat().st_size for p in path.iterdir() if suffixes is None or p.suffix in suffixes)
    except OSError:
        return 0
