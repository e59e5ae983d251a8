"""A pipeline's rules, as pure functions of its record and its stages' tasks: each stage's status, the
pipeline's, and what to do next (submit a stage whose dependencies completed, run a failed stage again,
skip a stage that can no longer run). The service applies the actions (service/pipelines.py); a test needs
no process."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from mcp_trainer.pipeline_records import PipelineRecord, StageState
from mcp_trainer.records import TaskResult, TaskStatus
from mcp_trainer.specs.pipeline import topological_order

__all__ = [
    "FactsOf",
    "PipelineStatus",
    "Skip",
    "StageStatus",
    "Submit",
    "TaskFacts",
    "next_actions",
    "outputs_of",
    "pipeline_status",
    "stage_statuses",
]


class StageStatus(StrEnum):
    PENDING = "pending"  # waits for the stages it depends on
    QUEUED = "queued"  # its task waits for a slot
    RUNNING = "running"
    RETRYING = "retrying"  # its task failed and the stage has attempts left: it runs again
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"  # its task was cancelled, or it was skipped (a stage it needs did not complete)


class PipelineStatus(StrEnum):
    QUEUED = "queued"  # no stage has started yet
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"  # a stage failed and nothing more can run; retry_pipeline runs what is left
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class TaskFacts:
    """What the pipeline needs of a stage's task."""

    status: TaskStatus
    result: TaskResult | None = None
    percent: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    phase: str | None = None  # while it runs
    error: str | None = None  # when it failed


FactsOf = Callable[[str], TaskFacts | None]  # None: the task no longer exists


@dataclass(frozen=True)
class Submit:
    stage: str


@dataclass(frozen=True)
class Skip:
    stage: str
    reason: str


_ACTIVE = (StageStatus.QUEUED, StageStatus.RUNNING, StageStatus.RETRYING)
_ENDED_BADLY = (StageStatus.FAILED, StageStatus.CANCELLED)


def _stage_status(stage: StageState, facts_of: FactsOf) -> StageStatus:
    if stage.error is not None:
        return StageStatus.FAILED
    latest = stage.latest()
    if latest is None:
        return StageStatus.CANCELLED if stage.skipped else StageStatus.PENDING
    facts = facts_of(latest)
    if facts is None:
        return StageStatus.FAILED
    if facts.status.is_waiting():
        return StageStatus.QUEUED
    if facts.status is TaskStatus.FAILED:
        attempts_left = len(stage.this_round()) < stage.max_attempts and stage.skipped is None
        return StageStatus.RETRYING if attempts_left else StageStatus.FAILED
    return StageStatus(facts.status.value)


def stage_statuses(record: PipelineRecord, facts_of: FactsOf) -> dict[str, StageStatus]:
    """Each stage's status, in the order the stages were given."""
    return {s.name: _stage_status(s, facts_of) for s in record.stages}


def pipeline_status(record: PipelineRecord, statuses: dict[str, StageStatus]) -> PipelineStatus:
    values = list(statuses.values())
    if all(s is StageStatus.COMPLETED for s in values):
        return PipelineStatus.COMPLETED
    pending = StageStatus.PENDING in values and not record.cancel_requested
    if pending or any(s in _ACTIVE for s in values):
        started = any(s not in (StageStatus.PENDING, StageStatus.QUEUED) for s in values)
        return PipelineStatus.RUNNING if started else PipelineStatus.QUEUED
    if record.cancel_requested:
        return PipelineStatus.CANCELLED
    return PipelineStatus.FAILED if StageStatus.FAILED in values else PipelineStatus.CANCELLED


def next_actions(record: PipelineRecord, facts_of: FactsOf) -> list[Submit | Skip]:
    """What to do now, dependencies first: submit the stages whose dependencies all completed and the
    failed stages with attempts left; skip the pending stages that can no longer run (a stage they need
    failed or was cancelled, or the pipeline was cancelled), so that their own dependants follow."""
    statuses = stage_statuses(record, facts_of)
    graph = {s.name: s.depends_on for s in record.stages}
    actions: list[Submit | Skip] = []
    for name in topological_order(graph):
        status = statuses[name]
        if record.cancel_requested:
            if status is StageStatus.PENDING:
                actions.append(Skip(name, "the pipeline was cancelled"))
                statuses[name] = StageStatus.CANCELLED
            continue
        if status is StageStatus.RETRYING:
            actions.append(Submit(name))
        elif status is StageStatus.PENDING:
            blocked = next((p for p in graph[name] if statuses[p] in _ENDED_BADLY), None)
            if blocked is not None:
                actions.append(Skip(name, f"stage {blocked!r}, which it needs, {statuses[blocked].value}"))
                statuses[name] = StageStatus.CANCELLED
            elif all(statuses[p] is StageStatus.COMPLETED for p in graph[name]):
                actions.append(Submit(name))
    return actions


def outputs_of(task_id: str, facts: TaskFacts | None) -> dict[str, Any]:
    """A completed stage's named outputs: its task id, its model's id and folder (if it made one), and
    the rest of its result's outputs."""
    found: dict[str, Any] = {"task_id": task_id}
    result = facts.result if facts is not None else None
    if result is not None:
        if result.model_id is not None and result.deleted_at is None:
            found["model_id"] = result.model_id
        if result.model_dir is not None and result.deleted_at is None:
            found["model_dir"] = result.model_dir
        found.update(result.outputs)
    return found
