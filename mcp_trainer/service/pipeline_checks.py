"""A pipeline's checks at submit, before anything is written (blocking: stages that refer to no other
stage have their data read; run it in a thread).

Each stage's task arguments are validated against its task type's spec with a typed sample standing in
for each `${stage.output}` reference; a reference to an output its stage never makes is refused, naming
the outputs that stage does make; a stage that refers to no other is checked in full, data included, as
a submit of that task would be.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from mcp_trainer.engine.metrics import Machine
from mcp_trainer.engine.store import TaskStore
from mcp_trainer.errors import InvalidInputError, TrainerError, describe_validation_error
from mcp_trainer.service.resources import resolve_request
from mcp_trainer.service.roots import Roots
from mcp_trainer.service.tasks import check_spec
from mcp_trainer.specs import AnySpec, parse_spec
from mcp_trainer.specs.options import SubmitOptions
from mcp_trainer.specs.outputs import COMMON_OUTPUTS
from mcp_trainer.specs.pipeline import (
    PipelineSpec,
    StageSpec,
    check_graph,
    references_in,
    resolve,
    split_arguments,
)

__all__ = ["CheckedPipeline", "check_pipeline"]


# What a stage's full check reads: the roots, the models directory and the queue's tasks.
Where = tuple[Roots, Path, TaskStore]


@dataclass(frozen=True)
class CheckedPipeline:
    spec: PipelineSpec
    graph: dict[str, list[str]]  # each stage's dependencies, references' stages included


def check_pipeline(
    name: str, stages: Sequence[Mapping[str, Any]], where: Where, machine: Machine
) -> CheckedPipeline:
    """The pipeline, once sound; InvalidInputError naming the stage and what is wrong otherwise."""
    try:
        spec = PipelineSpec.model_validate({"name": name, "stages": list(stages)})
    except ValidationError as exc:
        detail = describe_validation_error(exc, PipelineSpec.model_fields)
        raise InvalidInputError(
            f"Invalid pipeline: {detail.rstrip('.?')}.",
            "Each stage is {name, task, depends_on (optional), max_attempts (optional)}.",
        ) from None
    graph = check_graph(spec.stages)
    made: dict[str, frozenset[str]] = {}
    for stage in spec.stages:
        made[stage.name] = COMMON_OUTPUTS | _checked_stage(stage, where, machine).outputs()
    for stage in spec.stages:
        for source, output in references_in(stage.task):
            if output not in made[source]:
                kind = spec_task_type(spec, source)
                raise InvalidInputError(
                    f"stage {stage.name!r} refers to ${{{source}.{output}}}, but stage {source!r} ({kind}) "
                    f"makes no output {output!r}.",
                    f"Its outputs: {', '.join(sorted(made[source]))}.",
                )
    return CheckedPipeline(spec, graph)


def spec_task_type(spec: PipelineSpec, stage: str) -> str:
    return str(next(s for s in spec.stages if s.name == stage).task.get("task_type"))


def _checked_stage(stage: StageSpec, where: Where, machine: Machine) -> AnySpec:
    """The stage's task spec, validated (with samples for its references); in full when it has none."""
    try:
        arguments, options = split_arguments(stage.name, stage.task)
        sampled = resolve(arguments, _sample)
        parsed = parse_spec(sampled)
        queued = SubmitOptions.model_validate(resolve(options, _sample))
        if not references_in(stage.task):
            resolve_request(check_spec(parsed, *where), queued, machine)
        return parsed
    except ValidationError as exc:
        detail = describe_validation_error(exc, SubmitOptions.model_fields)
        raise InvalidInputError(f"stage {stage.name!r}: invalid parameters: {detail.rstrip('.?')}.") from None
    except TrainerError as exc:
        raise InvalidInputError(f"stage {stage.name!r}: {exc.message}", exc.hint) from None


def _sample(stage: str, output: str) -> Any:
    """A value of the right shape for a reference to `output` of `stage`, for validating the rest of a
    stage; two references to different stages get different values (a list of model ids stays valid)."""
    tag = hashlib.sha256(f"{stage}.{output}".encode()).hexdigest()[:8]
    if output.endswith("model_id"):
        return f"model_20000101T000000_{tag}"
    if output == "task_id":
        return f"task_20000101T000000_{tag}"
    if output.endswith(("_path", "_dir")):
        return f"/pipeline-reference/{stage}/{output}.csv"
    if output.startswith("n_") or output.endswith(("_code", "_bytes")):
        return 1
    return "reference"
