"""The pipeline half of the Python API: submit a pipeline of stages, read it, list, cancel and retry it;
and the owner's advancing of pipelines (`advance_pipelines`), which submits each stage's task once the
stages it needs have completed, with their outputs put in place of its references.

Every stage runs as an ordinary task (its record names the pipeline and the stage), so it is scheduled,
cancelled, retried and recovered like any other. A stage's task is submitted with an idempotency key
made of the pipeline, the stage and the attempt: a server killed between submitting it and noting it in
the pipeline file submits the same task again, never a second one.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import anyio
from pydantic import ValidationError

from mcp_trainer.engine import pipeline_plan as plan
from mcp_trainer.engine.pipeline_plan import PipelineStatus, StageStatus, TaskFacts
from mcp_trainer.engine.pipeline_store import PipelineStore
from mcp_trainer.errors import (
    InvalidInputError,
    InvalidStateError,
    TaskNotFoundError,
    TrainerError,
    describe_validation_error,
)
from mcp_trainer.ids import check_pipeline_id, new_pipeline_id
from mcp_trainer.offload import off_loop
from mcp_trainer.pipeline_records import PipelineRecord, StageState
from mcp_trainer.records import Priority, TaskStatus
from mcp_trainer.service.audit import audited
from mcp_trainer.service.paging import check_limit
from mcp_trainer.service.pipeline_checks import check_pipeline
from mcp_trainer.service.tasks import TaskMethods
from mcp_trainer.specs.options import SubmitOptions
from mcp_trainer.specs.pipeline import resolve, split_arguments
from mcp_trainer.views.pipelines import PipelineListItem, PipelinePage, PipelineStatusView, StageView, iso

__all__ = ["PipelineMethods"]

log = logging.getLogger(__name__)
_ENDED = (PipelineStatus.COMPLETED, PipelineStatus.FAILED, PipelineStatus.CANCELLED)


class PipelineMethods(TaskMethods):
    """Submit, read, list, cancel, retry and advance pipelines."""

    _pipelines_seen_ended: dict[str, int]  # pipeline id -> its file's mtime when it was seen ended
    _pipeline_store: PipelineStore | None = None

    def _pipelines(self) -> PipelineStore:
        store = self._pipeline_store
        if store is None or store.tasks is not self._parts().store:
            store = self._pipeline_store = PipelineStore(self._parts().store)
        return store

    async def _advance_pipelines_periodically(self, interval_s: float) -> None:
        """While this process owns the queue: advance its pipelines every `interval_s`."""
        while True:
            if self._parts().scheduler.is_owner:
                try:
                    await self.advance_pipelines()
                except Exception:  # e.g. a full disk: log it and try again next round
                    log.exception("advancing the pipelines failed")
            await anyio.sleep(interval_s)

    async def submit_pipeline(
        self,
        name: str,
        stages: Sequence[Mapping[str, Any]],
        *,
        user_id: str | None = None,
        priority: Priority | str = Priority.NORMAL,
        template: str | None = None,
    ) -> PipelineStatusView:
        """Check a pipeline (stage names, dependencies, no cycle, references to outputs its stages make,
        each stage's task arguments, and the data of stages that refer to no other), save it, and start
        the stages that depend on none. Returns its status at once. Raises InvalidInputError, saying which
        stage and what, and writes nothing, when anything is wrong."""
        async with self._audit.record("submit_pipeline", user_id=user_id, name=name) as entry:
            try:
                options = SubmitOptions.model_validate(
                    {"user_id": user_id, "priority": priority, "name": name}
                )
            except ValidationError as exc:
                detail = describe_validation_error(exc, ("name", "user_id", "priority"))
                raise InvalidInputError(f"Invalid parameters: {detail.rstrip('.?')}.") from None
            parts = self._parts()
            machine = parts.scheduler.metrics.machine_facts
            where = (self.roots, self.models_dir, parts.store)
            checked = await off_loop(lambda: check_pipeline(name, stages, where, machine()))
            record = PipelineRecord(
                pipeline_id=new_pipeline_id(),
                name=options.name or name,
                user_id=options.user_id,
                priority=options.priority,
                template=template,
                stages=[
                    StageState(
                        name=s.name,
                        task=s.task,
                        depends_on=checked.graph[s.name],
                        max_attempts=s.max_attempts,
                    )
                    for s in checked.spec.stages
                ],
            )
            await self._write_new(record)
            entry.update(pipeline_id=record.pipeline_id)
        await self._advance(record.pipeline_id)
        return await self.pipeline_status(record.pipeline_id)

    async def _write_new(self, record: PipelineRecord) -> None:
        try:
            await off_loop(self._pipelines().create, record)
        except OSError as exc:
            raise TrainerError(
                f"The pipeline could not be saved in {self.queue_dir}: {exc.strerror or exc}.",
                "Free disk space or fix the queue directory's permissions, then submit again.",
            ) from None

    # -- read ----------------------------------------------------------------------------------------

    async def pipeline_status(self, pipeline_id: str) -> PipelineStatusView:
        """The pipeline's status and progress, each stage's status, task, times and outputs, and the graph.
        Raises TaskNotFoundError when there is no such pipeline."""
        check_pipeline_id(pipeline_id)
        return await off_loop(self._status_view, pipeline_id)

    def _status_view(self, pipeline_id: str) -> PipelineStatusView:
        record = self._pipelines().get(pipeline_id)
        facts = self._facts(record)
        statuses = plan.stage_statuses(record, facts.get)
        return _view(record, statuses, facts)

    def _facts(self, record: PipelineRecord) -> dict[str, TaskFacts]:
        """What the pipeline needs of each task its stages ran in this round (blocking: file reads)."""
        found: dict[str, TaskFacts] = {}
        for stage in record.stages:
            for task_id in stage.this_round()[-1:]:
                try:
                    task = self._live(self._parts().store.find(task_id)[0])
                except TaskNotFoundError:
                    continue
                found[task_id] = TaskFacts(
                    status=task.status,
                    result=task.result,
                    percent=100.0 if task.status is TaskStatus.COMPLETED else task.progress.percent,
                    started_at=task.started_at,
                    finished_at=task.finished_at,
                    phase=task.progress.phase if task.status is TaskStatus.RUNNING else None,
                    error=task.error.message if task.error and task.status is TaskStatus.FAILED else None,
                )
        return found

    async def list_pipelines(
        self, *, status: str | None = None, user_id: str | None = None, limit: int = 20, offset: int = 0
    ) -> PipelinePage:
        """Pipelines newest first, filtered by status and user, `limit` at a time from `offset`."""
        check_limit(limit)
        if status is not None and status not in {s.value for s in PipelineStatus}:
            raise InvalidInputError(
                f"status {status!r} is not a pipeline status.",
                f"Use one of: {', '.join(s.value for s in PipelineStatus)}.",
            )
        if offset < 0:
            raise InvalidInputError(f"offset must be 0 or more (got {offset}).")
        return await off_loop(self._pipeline_page, status, user_id, limit, offset)

    def _pipeline_page(
        self, status: str | None, user_id: str | None, limit: int, offset: int
    ) -> PipelinePage:
        store = self._pipelines()
        items: list[PipelineListItem] = []
        for pipeline_id in store.ids():
            try:
                record = store.get(pipeline_id)
            except TaskNotFoundError:  # unreadable: logged by the store
                continue
            if user_id is not None and record.user_id != user_id:
                continue
            view = _view(record, plan.stage_statuses(record, (facts := self._facts(record)).get), facts)
            if status is not None and view.status != status:
                continue
            items.append(PipelineListItem(**view.model_dump(include=set(PipelineListItem.model_fields))))
        page = items[offset : offset + limit]
        more = offset + limit < len(items)
        return PipelinePage(pipelines=page, total=len(items), next_offset=offset + limit if more else None)

    # -- change --------------------------------------------------------------------------------------

    @audited("cancel_pipeline", "pipeline_id")
    async def cancel_pipeline(self, pipeline_id: str) -> PipelineStatusView:
        """Cancel every stage that has not finished: running and waiting stages' tasks are cancelled (as
        cancel_training_task does), stages not started never start. Completed stages keep their results.
        Raises InvalidStateError when the pipeline has already ended."""
        check_pipeline_id(pipeline_id)
        view = await self.pipeline_status(pipeline_id)
        if PipelineStatus(view.status) in _ENDED:
            raise InvalidStateError(
                f"Pipeline {pipeline_id} is already {view.status}; there is nothing to cancel.",
                "retry_pipeline runs its failed and cancelled stages again."
                if view.status != "completed"
                else None,
            )
        await off_loop(self._pipelines().update, pipeline_id, _request_cancel)
        for stage in view.stages:
            if stage.task_id is not None and stage.status in ("queued", "running", "retrying"):
                with contextlib.suppress(InvalidStateError):  # it ended meanwhile
                    await self.cancel(stage.task_id)
        await self._advance(pipeline_id)
        return await self.pipeline_status(pipeline_id)

    @audited("retry_pipeline", "pipeline_id")
    async def retry_pipeline(self, pipeline_id: str) -> PipelineStatusView:
        """Run the failed and cancelled stages of an ended pipeline again (and the stages after them);
        completed stages are kept, never run again. Raises InvalidStateError for a pipeline that is still
        running or has completed."""
        check_pipeline_id(pipeline_id)
        view = await self.pipeline_status(pipeline_id)
        if PipelineStatus(view.status) not in (PipelineStatus.FAILED, PipelineStatus.CANCELLED):
            raise InvalidStateError(
                f"Pipeline {pipeline_id} is {view.status}; only a failed or cancelled one can be retried.",
                "Wait for it to end, or cancel it first." if view.status != "completed" else "Nothing to do.",
            )
        again = {s.name for s in view.stages if s.status in (StageStatus.FAILED, StageStatus.CANCELLED)}
        await off_loop(self._pipelines().update, pipeline_id, lambda r: _reset(r, again))
        await self._advance(pipeline_id)
        return await self.pipeline_status(pipeline_id)

    # -- advance (the owner, and any process right after it changes a pipeline) -----------------------

    async def advance_pipelines(self) -> int:
        """Advance every pipeline that has not ended (or whose file changed since it ended); returns how
        many were looked at. The owner calls it every poll interval."""
        seen = self._pipelines_seen_ended
        mtimes = await off_loop(self._pipelines().mtimes)
        looked = 0
        for pipeline_id, mtime in sorted(mtimes.items()):
            if seen.get(pipeline_id) == mtime:
                continue
            looked += 1
            try:
                if await self._advance(pipeline_id):
                    seen[pipeline_id] = (await off_loop(self._pipelines().mtimes)).get(pipeline_id, mtime)
            except TrainerError as exc:
                log.warning("could not advance pipeline %s: %s", pipeline_id, exc.message)
        return looked

    async def _advance(self, pipeline_id: str) -> bool:
        """Apply what the pipeline's rules say to do now; True when the pipeline has ended."""
        store = self._pipelines()
        record = await off_loop(store.get, pipeline_id)
        facts = await off_loop(self._facts, record)
        for action in plan.next_actions(record, facts.get):
            if isinstance(action, plan.Skip):
                await off_loop(store.update, pipeline_id, lambda r, a=action: _skip(r, a.stage, a.reason))
            else:
                await self._submit_stage(record, action.stage, facts)
        record = await off_loop(store.get, pipeline_id)
        facts = await off_loop(self._facts, record)
        status = plan.pipeline_status(record, plan.stage_statuses(record, facts.get))
        ended = status in _ENDED
        if ended != (record.finished_at is not None):
            await off_loop(store.update, pipeline_id, lambda r: _note_end(r, ended))
        return ended

    async def _submit_stage(self, record: PipelineRecord, name: str, facts: dict[str, TaskFacts]) -> None:
        stage = record.stage(name)
        outputs = {
            parent: plan.outputs_of(task_id, facts.get(task_id))
            for parent in stage.depends_on
            if (task_id := record.stage(parent).latest()) is not None
        }
        try:
            spec, options = split_arguments(stage.name, stage.task)
            spec = resolve(spec, lambda s, o: _output(outputs, s, o))
            options = resolve(options, lambda s, o: _output(outputs, s, o))
            queued = SubmitOptions.model_validate(
                {
                    "name": f"{record.name} / {name}",
                    "user_id": record.user_id,
                    "priority": record.priority,
                    **options,
                    "depends_on": [outputs[p]["task_id"] for p in stage.depends_on],
                    "idempotency_key": f"{record.pipeline_id}:{name}:{len(stage.task_ids)}",
                }
            )
            view, _ = await self._submit_once(spec, queued, stage=(record.pipeline_id, name))
        except (InvalidInputError, ValidationError) as exc:
            reason = exc.message if isinstance(exc, InvalidInputError) else str(exc)
            hint = f" {exc.hint}" if isinstance(exc, InvalidInputError) and exc.hint else ""
            await off_loop(
                self._pipelines().update, record.pipeline_id, lambda r: _fail(r, name, reason + hint)
            )
            return
        except TrainerError as exc:  # the queue is full or its disk is: the next round tries again
            log.warning("stage %s of %s waits: %s", name, record.pipeline_id, exc.message)
            held = f"its task could not be queued yet ({exc.message}); tried again every few seconds"
            if stage.held != held:
                await off_loop(self._pipelines().update, record.pipeline_id, lambda r: _hold(r, name, held))
            return
        _, cancelled = await off_loop(
            self._pipelines().update, record.pipeline_id, lambda r: _add_task(r, name, view.task_id)
        )
        if cancelled and not view.status.is_terminal():  # cancel_pipeline came in meanwhile
            with contextlib.suppress(InvalidStateError):
                await self.cancel(view.task_id)


def _output(outputs: dict[str, dict[str, Any]], stage: str, name: str) -> Any:
    found = outputs.get(stage, {})
    if name not in found:
        raise InvalidInputError(
            f"stage {stage!r} completed without the output {name!r}"
            + (f" (it has: {', '.join(sorted(found))})." if found else "."),
            "Refer to an output that stage produced, then retry_pipeline.",
        )
    return found[name]


def _request_cancel(r: PipelineRecord) -> None:
    r.cancel_requested = True
    for stage in r.stages:
        if stage.latest() is None and stage.skipped is None and stage.error is None:
            stage.skipped = "the pipeline was cancelled"


def _reset(r: PipelineRecord, names: set[str]) -> None:
    r.cancel_requested = False
    r.retries += 1
    r.finished_at = None
    for stage in r.stages:
        if stage.name in names:
            stage.round_start = len(stage.task_ids)
            stage.skipped = None
            stage.error = None


def _skip(r: PipelineRecord, name: str, reason: str) -> None:
    stage = r.stage(name)
    if stage.latest() is None and stage.skipped is None and stage.error is None:
        stage.skipped = reason


def _hold(r: PipelineRecord, name: str, reason: str) -> None:
    r.stage(name).held = reason


def _fail(r: PipelineRecord, name: str, reason: str) -> None:
    r.stage(name).error = reason


def _add_task(r: PipelineRecord, name: str, task_id: str) -> bool:
    """Note the stage's new task (once); whether the pipeline was cancelled meanwhile."""
    stage = r.stage(name)
    if task_id not in stage.task_ids:
        stage.task_ids.append(task_id)
    stage.held = None
    return r.cancel_requested


def _note_end(r: PipelineRecord, ended: bool) -> None:
    r.finished_at = time.time() if ended else None


def _view(
    record: PipelineRecord, statuses: dict[str, StageStatus], facts: dict[str, TaskFacts]
) -> PipelineStatusView:
    stages: list[StageView] = []
    for stage in record.stages:
        task_id = stage.latest()
        found = facts.get(task_id) if task_id else None
        status = statuses[stage.name]
        stages.append(
            StageView(
                name=stage.name,
                status=status.value,
                task_id=task_id,
                task_type=str(stage.task.get("task_type")) if stage.task.get("task_type") else None,
                depends_on=stage.depends_on,
                progress=round(found.percent, 2) if found else 0.0,
                phase=found.phase if found else None,
                attempts=len(stage.this_round()),
                max_attempts=stage.max_attempts,
                started_at=iso(found.started_at) if found else None,
                finished_at=iso(found.finished_at) if found and found.status.is_terminal() else None,
                outputs=plan.outputs_of(task_id, found)
                if task_id and status is StageStatus.COMPLETED
                else None,
                note=stage.error or stage.skipped or (stage.held if task_id is None else None),
                error=found.error if found else None,
            )
        )
    overall = plan.pipeline_status(record, statuses)
    return PipelineStatusView(
        pipeline_id=record.pipeline_id,
        name=record.name,
        user_id=record.user_id,
        template=record.template,
        status=overall.value,
        progress=round(sum(s.progress for s in stages) / len(stages), 2),
        stages_total=len(stages),
        stages_completed=sum(s.status == "completed" for s in stages),
        created_at=iso(record.created_at) or "",
        finished_at=iso(record.finished_at),
        cancel_requested=record.cancel_requested,
        retries=record.retries,
        stages=stages,
        edges=[(parent, s.name) for s in record.stages for parent in s.depends_on],
    )
