"""mcp-trainer: a persistent, crash-safe training queue with an MCP face.

The public Python API is exactly `__all__`; it never imports `mcp`.
"""

__version__ = "0.1.0"

from mcp_trainer.errors import InvalidInputError, InvalidStateError, TaskNotFoundError, TrainerError
from mcp_trainer.models import ErrorKind, Priority, Progress, TaskError, TaskRecord, TaskResult, TaskStatus
from mcp_trainer.service import TrainingService
from mcp_trainer.specs import FinetuneSpec, SVMSpec, TabularSpec, TaskSpec
from mcp_trainer.views import QueueStatus, TaskPage, TaskStatusView

__all__ = [
    "ErrorKind",
    "FinetuneSpec",
    "InvalidInputError",
    "InvalidStateError",
    "Priority",
    "Progress",
    "QueueStatus",
    "SVMSpec",
    "TabularSpec",
    "TaskError",
    "TaskNotFoundError",
    "TaskPage",
    "TaskRecord",
    "TaskResult",
    "TaskSpec",
    "TaskStatus",
    "TaskStatusView",
    "TrainerError",
    "TrainingService",
    "__version__",
]
