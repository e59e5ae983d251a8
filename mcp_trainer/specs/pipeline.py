"""What a caller asks for when submitting a pipeline: named stages, each a task (the arguments of a submit
tool), its dependencies, and references to earlier stages' outputs (`${stage.output}`).

Checked here, before anything is written: stage names, dependencies on stages that exist, no cycle, and
every reference to a stage this one depends on (a reference implies the dependency) and to an output that
stage's kind of task produces. `placeholder_arguments` stands a typed sample in for each reference so that
the rest of a stage's arguments can be validated against its task type's spec at submit.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from mcp_trainer.errors import InvalidInputError
from mcp_trainer.specs.options import SubmitOptions

__all__ = [
    "MAX_STAGES",
    "REFERENCE",
    "STAGE_NAME",
    "PipelineSpec",
    "StageSpec",
    "check_graph",
    "references_in",
    "resolve",
    "split_arguments",
    "topological_order",
]

MAX_STAGES = 50
STAGE_NAME = r"[a-z][a-z0-9_]{0,63}"
REFERENCE = re.compile(r"\$\{(" + STAGE_NAME + r")\.([a-z][a-z0-9_]{0,63})\}")
_LOOSE_REFERENCE = re.compile(r"\$\{[^}]*\}?")
# Options a pipeline sets on its stages' tasks itself.
_PIPELINE_OWNED = ("depends_on", "on_dependency_failure", "idempotency_key")


class StageSpec(BaseModel):
    """One stage: a task, run once the stages it depends on have completed."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(pattern=f"^{STAGE_NAME}$")] = Field(
        description="Unique within the pipeline: lowercase letters, digits and _, starting with a letter."
    )
    task: dict[str, Any] = Field(
        description="The arguments of a submit tool (task_type and the rest, plus name, priority, cpu_cores,"
        " ...); a value may refer to an earlier stage's output as ${stage.output}.",
    )
    depends_on: list[Annotated[str, Field(pattern=f"^{STAGE_NAME}$")]] = Field(
        default_factory=list, description="Stages that must complete first (references add theirs)."
    )
    max_attempts: Annotated[int, Field(ge=1, le=5)] = Field(
        default=1, description="Runs of this stage in all when its task fails."
    )


class PipelineSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=200)]
    stages: Annotated[list[StageSpec], Field(min_length=1, max_length=MAX_STAGES)]


def references_in(value: Any) -> list[tuple[str, str]]:
    """Every (stage, output) referred to anywhere in `value` (strings in nested lists and mappings). A
    `${...}` that is not a well-formed reference is refused."""
    found: list[tuple[str, str]] = []
    if isinstance(value, str):
        for loose in _LOOSE_REFERENCE.finditer(value):
            match = REFERENCE.fullmatch(loose.group(0))
            if match is None:
                raise InvalidInputError(
                    f"{loose.group(0)!r} is not a reference.",
                    "Write ${stage.output}, e.g. ${prep.output_path} or ${train.model_id}.",
                )
            found.append((match.group(1), match.group(2)))
    elif isinstance(value, Mapping):
        for item in value.values():
            found += references_in(item)
    elif isinstance(value, list):
        for item in value:
            found += references_in(item)
    return found


def resolve(value: Any, output: Callable[[str, str], Any]) -> Any:
    """`value` with every reference replaced by `output(stage, name)`: a string that is exactly one
    reference takes the output's own value (a number stays a number); inside a longer string it is
    written as text."""
    if isinstance(value, str):
        whole = REFERENCE.fullmatch(value)
        if whole is not None:
            return output(whole.group(1), whole.group(2))
        return REFERENCE.sub(lambda m: str(output(m.group(1), m.group(2))), value)
    if isinstance(value, Mapping):
        return {key: resolve(item, output) for key, item in value.items()}
    if isinstance(value, list):
        return [resolve(item, output) for item in value]
    return value


def split_arguments(stage: str, task: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A stage's task arguments as (spec fields, queue options); options a pipeline sets itself are
    refused."""
    owned = sorted(k for k in task if k in _PIPELINE_OWNED)
    if owned:
        raise InvalidInputError(
            f"stage {stage!r}: {', '.join(owned)} cannot be set on a stage's task.",
            "Use the stage's depends_on (and ${stage.output} references); the pipeline sets the rest.",
        )
    options = {k: v for k, v in task.items() if k in SubmitOptions.model_fields}
    spec = {k: v for k, v in task.items() if k not in SubmitOptions.model_fields}
    return spec, options


def check_graph(stages: list[StageSpec]) -> dict[str, list[str]]:
    """Each stage's dependencies, references' stages included, once the graph is sound: unique names,
    dependencies on stages that exist (not itself), no cycle. InvalidInputError otherwise."""
    names = [s.name for s in stages]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InvalidInputError(f"Stage names must be unique: {', '.join(repeated)} repeated.", None)
    graph: dict[str, list[str]] = {}
    for stage in stages:
        parents = list(dict.fromkeys([*stage.depends_on, *(s for s, _ in references_in(stage.task))]))
        for parent in parents:
            if parent == stage.name:
                raise InvalidInputError(f"stage {stage.name!r} depends on itself.", "Remove that dependency.")
            if parent not in names:
                raise InvalidInputError(
                    f"stage {stage.name!r} depends on {parent!r}, which is not a stage of this pipeline.",
                    f"Stages: {', '.join(names)}.",
                )
        graph[stage.name] = parents
    topological_order(graph)
    return graph


def topological_order(graph: Mapping[str, list[str]]) -> list[str]:
    """Stages in an order where each comes after its dependencies (ties in the order given); a cycle is
    refused, naming it."""
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            cycle = [*path[path.index(name) :], name]
            raise InvalidInputError(
                f"The stages form a cycle: {' -> '.join(cycle)}.",
                "A stage cannot depend, directly or through others, on a stage that depends on it.",
            )
        state[name] = "visiting"
        for parent in graph[name]:
            visit(parent, [*path, name])
        state[name] = "done"
        order.append(name)

    for name in graph:
        visit(name, [])
    return order
