"""What a caller asks for, validated before a task exists: one pydantic spec per family of task types.

`tabular` (scikit-learn searches), `finetune` (PyTorch fine-tunes), `script` (the user's own script),
`preprocess`, `evaluate` and `cleanup` (tasks that train nothing: data preparation, model scoring,
removing intermediates), `spaces` (model families and their search spaces), `sources` (what a
`data_source` names), `options` (how a task is queued), `pipeline` (pipelines of stages). The MCP tools'
input schemas are generated from these models, so they are the one source of truth for every parameter.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import Field, ValidationError

from mcp_trainer.errors import InvalidInputError, closest, describe_validation_error
from mcp_trainer.specs.cleanup import CleanupSpec
from mcp_trainer.specs.evaluate import EvaluateSpec
from mcp_trainer.specs.finetune import FINETUNE_TASK_TYPES, FinetuneSpec
from mcp_trainer.specs.preprocess import PreprocessSpec
from mcp_trainer.specs.script import SCRIPT_TASK_TYPES, ScriptSpec
from mcp_trainer.specs.tabular import TABULAR_TASK_TYPES, TabularSpec

__all__ = [
    "FINETUNE_TASK_TYPES",
    "SCRIPT_TASK_TYPES",
    "SPEC_MODELS",
    "TABULAR_TASK_TYPES",
    "TASK_TYPES",
    "WORKFLOW_TASK_TYPES",
    "AnySpec",
    "TaskSpec",
    "parse_spec",
]

# Every kind of task: add its spec to the union and its task types to the table.
AnySpec = TabularSpec | FinetuneSpec | ScriptSpec | PreprocessSpec | EvaluateSpec | CleanupSpec
TaskSpec = Annotated[AnySpec, Field(discriminator="task_type")]
# Tasks that train nothing: they prepare data, score models or clean up, alone or as pipeline stages.
WORKFLOW_TASK_TYPES: tuple[str, ...] = ("preprocess", "evaluate", "cleanup")
SPEC_MODELS: dict[str, type[AnySpec]] = {
    **dict.fromkeys(TABULAR_TASK_TYPES, TabularSpec),
    **dict.fromkeys(FINETUNE_TASK_TYPES, FinetuneSpec),
    **dict.fromkeys(SCRIPT_TASK_TYPES, ScriptSpec),
    "preprocess": PreprocessSpec,
    "evaluate": EvaluateSpec,
    "cleanup": CleanupSpec,
}
TASK_TYPES: tuple[str, ...] = tuple(SPEC_MODELS)


def parse_spec(spec: Mapping[str, Any] | AnySpec) -> AnySpec:
    """The spec model for `spec`'s task type, validated; InvalidInputError says what is wrong in words."""
    if not isinstance(spec, Mapping):
        return spec
    task_type = spec.get("task_type")
    model = SPEC_MODELS.get(task_type) if isinstance(task_type, str) else None
    if model is None:
        guess = closest(task_type, TASK_TYPES) if isinstance(task_type, str) else None
        raise InvalidInputError(
            f"Unknown task_type {task_type!r}" + (f" (did you mean {guess!r}?)." if guess else "."),
            f"Use one of: {', '.join(TASK_TYPES)}.",
        )
    try:
        return model.model_validate(dict(spec))
    except ValidationError as exc:
        detail = describe_validation_error(exc, model.model_fields)
        raise InvalidInputError(f"Invalid parameters: {detail.rstrip('.?')}.") from None
