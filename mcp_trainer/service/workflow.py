"""The checks at submit of the tasks that train nothing (preprocess, evaluate, cleanup): what their specs
name must exist and be usable now, or the submit is refused in words and nothing is queued. Blocking (it
reads headers, model metadata and task records): run it in a worker thread.

The workers check again when the task runs (a model deleted, a task retried meanwhile), since time passes
between the two.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mcp_trainer.artifacts.model_dir import read_metadata
from mcp_trainer.engine.cleanup import datasets_in_use
from mcp_trainer.engine.store import TaskStore
from mcp_trainer.errors import InvalidInputError, InvalidStateError, TaskNotFoundError
from mcp_trainer.preflight.evaluate import ModelFacts, check_evaluation, check_evaluation_data
from mcp_trainer.preflight.preprocess import check_preprocess
from mcp_trainer.records import TaskStatus
from mcp_trainer.service.roots import Roots
from mcp_trainer.specs.cleanup import CleanupSpec
from mcp_trainer.specs.evaluate import EvaluateSpec
from mcp_trainer.specs.preprocess import PreprocessSpec
from mcp_trainer.specs.sources import parse_source
from mcp_trainer.views.tasks import iso

__all__ = ["WorkflowSpec", "check_workflow"]

WorkflowSpec = PreprocessSpec | EvaluateSpec | CleanupSpec


def check_workflow(spec: WorkflowSpec, roots: Roots, models_dir: Path, store: TaskStore) -> WorkflowSpec:
    """`spec` with its data path absolute and inside the roots, once what it names passed the checks;
    raises InvalidInputError (or InvalidStateError, TaskNotFoundError) naming the problem."""
    if isinstance(spec, CleanupSpec):
        _check_cleanup(spec, store)
        return spec
    if parse_source(spec.data_source).path is not None:
        spec = spec.model_copy(update={"data_source": roots.data_file(spec.data_source)})
    if isinstance(spec, PreprocessSpec):
        check_preprocess(spec)
        return spec
    models = [_model_facts(models_dir, store, model_id) for model_id in spec.models]
    targets = check_evaluation(spec, models)
    check_evaluation_data(spec, models, targets)
    return spec


def _model_facts(models_dir: Path, store: TaskStore, model_id: str) -> ModelFacts:
    """What the model's metadata says; a model that is not there is refused saying why, when its task
    tells (deleted, not made yet)."""
    try:
        meta: dict[str, Any] = read_metadata(models_dir, model_id)
    except InvalidInputError:
        raise _why_no_model(store, model_id) from None
    features = (meta.get("features") or {}).get("names") or []
    return ModelFacts(
        model_id=model_id,
        task_type=str(meta.get("task_type")),
        features=[str(f) for f in features],
        targets=[str(t) for t in meta.get("target") or []],
    )


def _why_no_model(store: TaskStore, model_id: str) -> InvalidInputError:
    task_id = "task_" + model_id.removeprefix("model_")
    try:
        record, _ = store.find(task_id)
    except (TaskNotFoundError, InvalidInputError):
        return InvalidInputError(
            f"No model {model_id}.",
            "list_models shows the saved models; a completed task's status names its own.",
        )
    if record.result is not None and record.result.deleted_at is not None:
        return InvalidInputError(
            f"Model {model_id} was deleted (delete_model, {iso(record.result.deleted_at)}).",
            f"Train it again (task {task_id} made it), or evaluate other models.",
        )
    if not record.status.is_terminal():
        return InvalidInputError(
            f"Model {model_id} does not exist yet: task {task_id}, which makes it, is {record.status.value}.",
            "Submit the evaluation once that task has completed.",
        )
    return InvalidInputError(
        f"No model {model_id}: task {task_id} ended {record.status.value} without it.",
        "list_models shows the saved models.",
    )


def _check_cleanup(spec: CleanupSpec, store: TaskStore) -> None:
    """Every task named exists and has ended, and no waiting or running task reads its datasets: a
    cleanup never takes files from under a task that may still use them."""
    named = spec.task_ids or []
    for task_id in named:
        record, _ = store.find(task_id)  # TaskNotFoundError names it
        if not record.status.is_terminal():
            what = (
                "waiting to run" if record.status in (TaskStatus.QUEUED, TaskStatus.RETRYING) else "running"
            )
            raise InvalidStateError(
                f"Task {task_id} is {what} ({record.status.value}); a cleanup removes only the files of "
                "ended tasks.",
                "Wait for it to end (wait_for_task) or cancel it, then submit the cleanup (nothing queued).",
            )
    if "datasets" in spec.remove:
        for task_id, reader in datasets_in_use(store, named).items():
            raise InvalidStateError(
                f"Task {reader}, waiting or running, reads the datasets of {task_id}; a cleanup would take "
                "them from under it.",
                "Submit the cleanup once it has ended, or leave 'datasets' out of remove (nothing queued).",
            )
