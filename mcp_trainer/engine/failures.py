"""What went wrong in a worker, as a classified error an agent can act on."""

from __future__ import annotations

import errno
import traceback
from pathlib import Path

from mcp_trainer.records import ErrorKind, TaskError
from mcp_trainer.trainers.base import TaskFailure

__all__ = ["classify_exception"]


def classify_exception(exc: BaseException) -> TaskError:
    """Map an exception from training to a classified error an agent can act on."""
    if isinstance(exc, TaskFailure):
        return exc.as_error()
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
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return TaskError(
            kind=ErrorKind.DISK_FULL,
            message=f"No space left on the device: {exc}.",
            hint="Free disk space (old models in trained_models/) and submit again.",
        )
    where = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    at = f" at {Path(where[0].filename).name}:{where[0].lineno}" if where else ""
    return TaskError(
        kind=ErrorKind.INTERNAL,
        message=f"{type(exc).__name__}: {exc}{at}",
        hint="This looks like a bug in mcp-trainer; the task log has the full traceback.",
    )
