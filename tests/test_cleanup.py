"""cleanup tasks through the queue, on tasks whose records and files a test lays out: what goes (work
folders, checkpoints, datasets; models only when named with delete_models), what stays, dry runs, the age
selection, and the refusals at submit and when the task runs."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mcp_trainer import InvalidInputError, InvalidStateError, TaskNotFoundError, TaskStatus, TrainingService
from mcp_trainer.engine.layout import QueueLayout
from mcp_trainer.engine.store import TaskStore
from mcp_trainer.ids import model_id_for, new_task_id
from mcp_trainer.records import ErrorKind, TaskRecord
from mcp_trainer.specs.tabular import TabularSpec

pytestmark = pytest.mark.anyio
DAY_S = 86400.0


class Queue:
    """Task records and their files, laid out as tasks leave them."""

    def __init__(self, queue_dir: Path, models_dir: Path) -> None:
        self.layout = QueueLayout.at(queue_dir)
        self.models_dir = models_dir
        self.store = TaskStore(self.layout)

    def task(
        self,
        status: TaskStatus = TaskStatus.COMPLETED,
        *,
        days_ago: float = 0.01,
        model: bool = False,
        data_source: str = "/data/x.csv",
    ) -> str:
        at = time.time() - days_ago * DAY_S
        task_id = new_task_id(at - 60)
        record: dict[str, Any] = {
            "task_id": task_id,
            "spec": TabularSpec(task_type="svm_classification", data_source=data_source, target_column="y"),
            "status": status,
            "created_at": at - 60,
            "created_ns": int((at - 60) * 1e9),
            "finished_at": at if status.is_terminal() else None,
        }
        if model:
            model_id = model_id_for(task_id)
            (self.models_dir / model_id / "reports").mkdir(parents=True)
            (self.models_dir / model_id / "model.pkl").write_bytes(b"m" * 100)
            (self.models_dir / model_id / "metadata.json").write_text(json.dumps({"model_id": model_id}))
            record["result"] = {"model_id": model_id, "model_dir": str(self.models_dir / model_id)}
        self.store.create(TaskRecord.model_validate(record))
        return task_id

    def files(self, task_id: str) -> None:
        """A study, a checkpoint and a dataset, of 10, 20 and 30 bytes."""
        work = self.layout.work_path(task_id)
        (work / "checkpoints").mkdir(parents=True)
        (work / "study.journal").write_bytes(b"j" * 10)
        (work / "checkpoints" / "step-000000001.pt").write_bytes(b"c" * 20)
        self.layout.dataset_path(task_id).mkdir(parents=True)
        (self.layout.dataset_path(task_id) / "data.csv").write_bytes(b"d" * 30)


@pytest.fixture
def queue(queue_dir: Path, models_dir: Path) -> Iterator[Queue]:
    models_dir.mkdir(parents=True)
    q = Queue(queue_dir, models_dir)
    yield q
    q.store.close()


def cleanup(**fields: Any) -> dict[str, Any]:
    return {"task_type": "cleanup", **fields}


async def run(queue: Queue, spec: dict[str, Any]) -> Any:
    async with TrainingService(queue.layout.root, queue.models_dir) as svc:
        task = await svc.submit(spec)
        return await svc.wait(task.task_id, timeout_s=60)


async def test_a_finished_tasks_work_folder_and_datasets_go_and_its_model_and_the_other_tasks_stay(
    queue: Queue,
) -> None:
    done, other = queue.task(model=True), queue.task()
    for task_id in (done, other):
        queue.files(task_id)
    finished = await run(queue, cleanup(task_ids=[done]))
    assert finished.status is TaskStatus.COMPLETED, finished.error
    assert finished.outputs == {
        "removed": [str(queue.layout.work_path(done)), str(queue.layout.dataset_path(done))],
        "n_removed": 2,
        "freed_bytes": 60,
        "dry_run": False,
    }
    assert not queue.layout.work_path(done).exists() and not queue.layout.dataset_path(done).exists()
    assert (queue.models_dir / model_id_for(done) / "model.pkl").exists()
    assert (queue.layout.work_path(other) / "study.journal").exists()
    assert (queue.layout.dataset_path(other) / "data.csv").exists()
    assert not [p for p in queue.layout.work_dir.iterdir() if p.name.startswith(".pruning-")]


async def test_checkpoints_alone_can_go_and_the_rest_of_the_work_folder_stays(queue: Queue) -> None:
    done = queue.task(TaskStatus.FAILED)
    queue.files(done)
    finished = await run(queue, cleanup(task_ids=[done], remove=["checkpoints"]))
    assert finished.outputs["removed"] == [str(queue.layout.work_path(done) / "checkpoints")]
    assert finished.outputs["freed_bytes"] == 20
    assert (queue.layout.work_path(done) / "study.journal").exists()
    assert (queue.layout.dataset_path(done) / "data.csv").exists()


async def test_a_dry_run_removes_nothing_and_says_what_would_go(queue: Queue) -> None:
    done = queue.task(model=True)
    queue.files(done)
    finished = await run(queue, cleanup(task_ids=[done], delete_models=True, dry_run=True))
    assert finished.status is TaskStatus.COMPLETED
    assert finished.outputs["dry_run"] is True and finished.outputs["n_removed"] == 3
    assert finished.outputs["removed"][-1] == str(queue.models_dir / model_id_for(done))
    assert finished.outputs["freed_bytes"] == 60 + 100 + len(json.dumps({"model_id": model_id_for(done)}))
    assert queue.layout.work_path(done).exists() and (queue.models_dir / model_id_for(done)).exists()


async def test_delete_models_removes_the_named_tasks_model_and_its_status_says_so(queue: Queue) -> None:
    done = queue.task(model=True)
    finished = await run(queue, cleanup(task_ids=[done], delete_models=True))
    assert finished.outputs["removed"] == [str(queue.models_dir / model_id_for(done))]
    assert not (queue.models_dir / model_id_for(done)).exists()
    async with TrainingService(queue.layout.root, queue.models_dir, execute=False) as svc:
        assert (await svc.status(done)).model_deleted


async def test_older_than_days_cleans_the_tasks_ended_that_long_ago_and_never_their_models(
    queue: Queue,
) -> None:
    old, recent = queue.task(days_ago=10, model=True), queue.task(days_ago=1)
    waiting = queue.task(TaskStatus.QUEUED, days_ago=20)
    for task_id in (old, recent, waiting):
        queue.files(task_id)
    finished = await run(queue, cleanup(older_than_days=5))
    assert finished.outputs["removed"] == [
        str(queue.layout.work_path(old)),
        str(queue.layout.dataset_path(old)),
    ]
    assert (queue.models_dir / model_id_for(old) / "model.pkl").exists()
    assert queue.layout.work_path(recent).exists() and queue.layout.dataset_path(waiting).exists()


# -- refusals ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({}, "name task_ids, or older_than_days, or both"),
        (
            {"older_than_days": 3, "delete_models": True},
            "delete_models removes the models of the tasks named",
        ),
        ({"task_ids": ["task_1"]}, "'task_1' is not a task id"),
        ({"task_ids": []}, "task_ids must be at least 1 items long"),
        (
            {"older_than_days": 1, "remove": ["models"]},
            "remove[0] must be one of 'checkpoints', 'work', 'datasets'",
        ),
    ],
)
async def test_a_cleanup_that_names_nothing_or_asks_the_impossible_is_refused_in_words(
    queue: Queue, fields: dict[str, Any], words: str
) -> None:
    async with TrainingService(queue.layout.root, queue.models_dir, execute=False) as svc:
        with pytest.raises(InvalidInputError) as info:
            await svc.submit(cleanup(**fields))
        assert words in str(info.value)
        assert (await svc.list_tasks()).total == 0


async def test_an_unknown_task_and_a_task_still_waiting_or_running_are_refused_at_submit(
    queue: Queue,
) -> None:
    waiting, running = queue.task(TaskStatus.QUEUED), queue.task(TaskStatus.RUNNING)
    async with TrainingService(queue.layout.root, queue.models_dir, execute=False) as svc:
        with pytest.raises(InvalidStateError, match=f"Task {running} is running"):
            await svc.submit(cleanup(task_ids=[running], remove=["checkpoints"]))
        with pytest.raises(TaskNotFoundError):
            await svc.submit(cleanup(task_ids=["task_20261122T143000_8f3a2c1d"]))
        with pytest.raises(InvalidStateError) as info:
            await svc.submit(cleanup(task_ids=[queue.task(), waiting]))
        assert (
            f"Task {waiting} is waiting to run (queued); a cleanup removes only the files of ended tasks"
            in str(info.value)
        )
        assert (await svc.list_tasks(task_type="cleanup")).total == 0


async def test_datasets_a_waiting_task_reads_are_not_taken_from_under_it(queue: Queue) -> None:
    prep = queue.task()
    queue.files(prep)
    reader = queue.task(TaskStatus.QUEUED, data_source=str(queue.layout.dataset_path(prep) / "data.csv"))
    async with TrainingService(queue.layout.root, queue.models_dir, execute=False) as svc:
        with pytest.raises(InvalidStateError) as info:
            await svc.submit(cleanup(task_ids=[prep]))
        assert f"Task {reader}, waiting or running, reads the datasets of {prep}" in str(info.value)
        assert (await svc.submit(cleanup(task_ids=[prep], remove=["work"]))).task_id  # its work folder may go


async def test_a_named_task_retried_before_the_cleanup_runs_fails_it_as_a_conflict_and_nothing_goes(
    queue: Queue,
) -> None:
    stopped, other = queue.task(TaskStatus.CANCELLED), queue.task()
    for task_id in (stopped, other):
        queue.files(task_id)
    async with TrainingService(queue.layout.root, queue.models_dir, execute=False) as svc:
        task = await svc.submit(cleanup(task_ids=[other, stopped]), priority="high")
        await svc.retry(stopped)  # waits again: the cleanup, ahead of it in line, must leave its files
    async with TrainingService(queue.layout.root, queue.models_dir, max_concurrent=1) as svc:
        done = await svc.wait(task.task_id, timeout_s=60)
    assert done.status is TaskStatus.FAILED and done.error is not None
    assert done.error.kind is ErrorKind.CONFLICT
    assert done.error.message.startswith(f"Task(s) {stopped} are waiting or running again")
    for task_id in (stopped, other):
        assert (queue.layout.work_path(task_id) / "study.journal").exists()
        assert (queue.layout.dataset_path(task_id) / "data.csv").exists()
