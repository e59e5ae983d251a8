"""Ready pipelines: each a name, what it does, its arguments (a pydantic model, so they are checked and
described like any tool's), and the stages it makes from them for `submit_pipeline`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mcp_trainer.errors import InvalidInputError, closest, describe_validation_error
from mcp_trainer.specs.spaces import TASK_FAMILIES

__all__ = ["TemplateInfo", "TemplateList", "template_stages", "templates"]


class CompareFamilies(BaseModel):
    """Split a file into training and held-out parts, train several model families on the training part
    in parallel, then evaluate them all on the held-out part and name the best."""

    model_config = ConfigDict(extra="forbid")

    data_source: str = Field(description="Absolute path of the data file.")
    target_column: str = Field(description="The column to predict.")
    task_types: Annotated[list[str], Field(min_length=2, max_length=8)] = Field(
        default=[
            "svm_classification",
            "random_forest_classification",
            "hist_gradient_boosting_classification",
        ],
        description="The families to compare (submit_training_task's task_type), all classification or all "
        "regression.",
    )
    test_size: Annotated[float, Field(gt=0, lt=1)] = Field(default=0.2, description="Held-out share.")
    n_trials: Annotated[int, Field(ge=1, le=1000)] = Field(
        default=20, description="Search trials per family."
    )


class TrainThenEvaluate(BaseModel):
    """Train one model on a file, then evaluate it on a held-out file of your own."""

    model_config = ConfigDict(extra="forbid")

    task_type: str = Field(description="submit_training_task's task_type.")
    data_source: str = Field(description="Absolute path of the training data.")
    heldout_source: str = Field(description="Absolute path of the held-out data (same columns).")
    target_column: str = Field(description="The column to predict.")
    n_trials: Annotated[int, Field(ge=1, le=1000)] = Field(default=20, description="Search trials.")


class FinetuneThenCleanUp(BaseModel):
    """Fine-tune a model (submit_finetune_task's arguments), then remove its checkpoints once it has
    completed, keeping the model."""

    model_config = ConfigDict(extra="forbid")

    finetune: dict[str, Any] = Field(description="The arguments of submit_finetune_task.")


def _compare(a: CompareFamilies) -> list[dict[str, Any]]:
    unknown = [t for t in a.task_types if t not in TASK_FAMILIES]
    if unknown:
        raise InvalidInputError(
            f"task_types: {', '.join(unknown)} is not a model family.", "get_search_spaces lists them."
        )
    stages: list[dict[str, Any]] = [
        {
            "name": "prep",
            "task": {
                "task_type": "preprocess",
                "data_source": a.data_source,
                "target_column": a.target_column,
                "test_size": a.test_size,
            },
        }
    ]
    trained = []
    for task_type in dict.fromkeys(a.task_types):
        name = f"train_{task_type}"
        trained.append(name)
        task = {"task_type": task_type, "data_source": "${prep.train_path}", "target_column": a.target_column}
        stages.append({"name": name, "task": task | {"n_trials": a.n_trials}})
    evaluate = {
        "task_type": "evaluate",
        "model_ids": [f"${{{name}.model_id}}" for name in trained],
        "data_source": "${prep.test_path}",
        "target_column": a.target_column,
    }
    return [*stages, {"name": "evaluate", "task": evaluate}]


def _train_then_evaluate(a: TrainThenEvaluate) -> list[dict[str, Any]]:
    train = {"task_type": a.task_type, "data_source": a.data_source, "target_column": a.target_column}
    evaluate = {
        "task_type": "evaluate",
        "model_id": "${train.model_id}",
        "data_source": a.heldout_source,
        "target_column": a.target_column,
    }
    return [
        {"name": "train", "task": train | {"n_trials": a.n_trials}},
        {"name": "evaluate", "task": evaluate},
    ]


def _finetune_then_clean_up(a: FinetuneThenCleanUp) -> list[dict[str, Any]]:
    cleanup = {"task_type": "cleanup", "task_ids": ["${finetune.task_id}"], "remove": ["checkpoints"]}
    return [{"name": "finetune", "task": a.finetune}, {"name": "cleanup", "task": cleanup}]


@dataclass(frozen=True)
class _Template:
    arguments: type[BaseModel]
    stages: Callable[[Any], list[dict[str, Any]]]
    stage_names: tuple[str, ...]


_TEMPLATES: dict[str, _Template] = {
    "compare_families": _Template(
        CompareFamilies, _compare, ("prep", "train_<task_type> (one per family)", "evaluate")
    ),
    "train_then_evaluate": _Template(TrainThenEvaluate, _train_then_evaluate, ("train", "evaluate")),
    "finetune_then_clean_up": _Template(
        FinetuneThenCleanUp, _finetune_then_clean_up, ("finetune", "cleanup")
    ),
}


class TemplateInfo(BaseModel):
    name: str
    description: str
    arguments: dict[str, Any] = Field(description="JSON schema of template_arguments")
    stages: list[str] = Field(description="the stages it makes, in order")


class TemplateList(BaseModel):
    templates: list[TemplateInfo]


def templates() -> TemplateList:
    """Every template, described."""
    found = []
    for name, t in _TEMPLATES.items():
        schema = t.arguments.model_json_schema()
        found.append(
            TemplateInfo(
                name=name,
                description=" ".join((t.arguments.__doc__ or "").split()),
                arguments={k: v for k, v in schema.items() if k in ("properties", "required")},
                stages=list(t.stage_names),
            )
        )
    return TemplateList(templates=found)


def template_stages(name: str, arguments: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The stages template `name` makes from `arguments`; InvalidInputError for an unknown template or
    bad arguments."""
    template = _TEMPLATES.get(name)
    if template is None:
        guess = closest(name, _TEMPLATES)
        raise InvalidInputError(
            f"Unknown template {name!r}" + (f" (did you mean {guess!r}?)." if guess else "."),
            f"Templates: {', '.join(_TEMPLATES)} (list_pipeline_templates describes them).",
        )
    try:
        parsed = template.arguments.model_validate(dict(arguments))
    except ValidationError as exc:
        detail = describe_validation_error(exc, template.arguments.model_fields)
        raise InvalidInputError(f"template_arguments of {name!r}: {detail.rstrip('.?')}.") from None
    return template.stages(parsed)
