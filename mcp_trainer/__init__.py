"""mcp-trainer: a persistent, crash-safe training queue with an MCP face.

The public Python API is exactly `__all__`; it never imports `mcp`. ARCHITECTURE.md maps the packages.
"""

from mcp_trainer.engine.admission import Thresholds
from mcp_trainer.engine.alerts import AlertRules
from mcp_trainer.engine.starts import AdmissionConfig
from mcp_trainer.errors import InvalidInputError, InvalidStateError, TaskNotFoundError, TrainerError
from mcp_trainer.records import ErrorKind, Priority, Progress, TaskError, TaskRecord, TaskResult, TaskStatus
from mcp_trainer.service.training import TrainingService
from mcp_trainer.specs import TaskSpec
from mcp_trainer.specs.cleanup import CleanupSpec
from mcp_trainer.specs.evaluate import EvaluateSpec
from mcp_trainer.specs.finetune import FinetuneSpec
from mcp_trainer.specs.options import SubmitOptions
from mcp_trainer.specs.preprocess import PreprocessSpec
from mcp_trainer.specs.script import ScriptSpec
from mcp_trainer.specs.tabular import TabularSpec
from mcp_trainer.version import __version__
from mcp_trainer.views.maintenance import MaintenanceReport
from mcp_trainer.views.tasks import AlertsView, QueueStatus, TaskListItem, TaskPage, TaskStatusView

__all__ = [
    "AdmissionConfig",
    "AlertRules",
    "AlertsView",
    "CleanupSpec",
    "ErrorKind",
    "EvaluateSpec",
    "FinetuneSpec",
    "InvalidInputError",
    "InvalidStateError",
    "MaintenanceReport",
    "PreprocessSpec",
    "Priority",
    "Progress",
    "QueueStatus",
    "ScriptSpec",
    "SubmitOptions",
    "TabularSpec",
    "TaskError",
    "TaskListItem",
    "TaskNotFoundError",
    "TaskPage",
    "TaskRecord",
    "TaskResult",
    "TaskSpec",
    "TaskStatus",
    "TaskStatusView",
    "Thresholds",
    "TrainerError",
    "TrainingService",
    "__version__",
]


def __getattr__(name: str) -> object:
    if name == "SVMSpec":  # the name the tabular spec had when SVMs were its only models
        import warnings

        warnings.warn(
            "mcp_trainer.SVMSpec is deprecated; use mcp_trainer.TabularSpec", DeprecationWarning, stacklevel=2
        )
        return TabularSpec
    raise AttributeError(f"module 'mcp_trainer' has no attribute {name!r}")
