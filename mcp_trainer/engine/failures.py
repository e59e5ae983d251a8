"""What went wrong in a worker, as a classified error an agent can act on."""

from __future__ import annotations

import errno
import shutil
import traceback
from pathlib import Path

from mcp_trainer.records import ErrorKind, TaskError
from mcp_trainer.trainers.base import TaskFailure

__all__ = ["classify_exception"]


_FULL_BELOW_BYTES = 1 << 20  # a disk with less than this free is full, for the purpose of blame


def classify_exception(exc: BaseException, disks: tuple[Path, ...] = ()) -> TaskError:
    """Map an exception from training to a classified error an agent can act on.

    A full disk surfaces in many disguises (an OSError with ENOSPC anywhere in the chain of causes, or a
    library's own error such as Optuna's "AssertionError: Should not reach" after a failed journal
    write): it is disk_full when any cause says ENOSPC, or when one of `disks` is full at the time."""
    if isinstance(exc, TaskFailure):
        return exc.as_error()
    if _no_space(exc) or any(_full(d) for d in disks):
        return TaskError(
            kind=ErrorKind.DISK_FULL,
            message=f"No space left on the device: {type(exc).__name__}: {str(exc)[:300]}.",
            hint="Free disk space (old models in trained_models/, old tasks' work folders) and submit again.",
        )
    text = str(exc)
    if isinstance(exc, RuntimeError) and ("CUDA error" in text or "CUBLAS_STATUS" in text):
        return TaskError(
            kind=ErrorKind.CUDA_ERROR,
            message=f"The GPU failed: {text.splitlines()[0][:300]}",
            hint="Check the GPU with nvidia-smi; submit again once it is healthy, or hide it "
            "(CUDA_VISIBLE_DEVICES='') to train on the CPU.",
        )
    if isinstance(exc, MemoryError):
        return TaskError(
            kind=ErrorKind.OUT_OF_MEMORY,
            message="The worker ran out of memory.",
            hint="Use fewer rows or features, or free memory on the machine, then submit again.",
        )
    where = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    at = f" at {Path(where[0].filename).name}:{where[0].lineno}" if where else ""
    return TaskError(
        kind=ErrorKind.INTERNAL,
        message=f"{type(exc).__name__}: {exc}{at}",
        hint="This looks like a bug in mcp-trainer; the task log has the full traceback.",
    )


def _no_space(exc: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno == errno.ENOSPC:
            return True
        current = current.__cause__ or current.__context__
    return False


def _full(path: Path) -> bool:
    try:
        return shutil.disk_usage(path).free < _FULL_BELOW_BYTES
    except OSError:
        return False
