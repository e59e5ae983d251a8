"""Scenario 5: hostile files dropped into a live queue while its tasks run: garbage, torn JSON (a record cut
short), links (one to a valid record outside the queue), an oversized record, a FIFO, a folder, a record
under another task's name, a name that is no task id. Each is set aside in queue/corrupt/ with its
reason (exactly once, though the owner and a second server both scan the queue), none is run or
followed, and every real task completes as if nothing happened."""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from faults.faultfigures import FaultFigures
from faults.faultkit import SEED, StdioServer, WorkerWatch, audit, read_records, search, servers, tiny
from mcp_trainer import TaskRecord, TaskStatus, TrainingService
from mcp_trainer.engine.store import MAX_RECORD_BYTES
from mcp_trainer.ids import new_task_id

pytestmark = [pytest.mark.faults, pytest.mark.anyio]

ROUNDS = 3


def valid_copy(template: TaskRecord, task_id: str) -> bytes:
    """A record that would be a runnable task of its own under the name `<task_id>.json`."""
    fresh = template.model_copy(update={"task_id": task_id, "history": template.history[:1]})
    return fresh.model_dump_json().encode()


def hostile_makers(outside: Path, template: TaskRecord) -> dict[str, Callable[[Path], str]]:
    """Kinds of hostile file: each writes one into the queue and returns its name and the words its
    reason must contain, as `name|words`."""

    def garbage(q: Path) -> str:
        name = f"{new_task_id()}.json"
        (q / name).write_bytes(random.Random(name).randbytes(3000))
        return f"{name}|not a valid task record"

    def torn(q: Path) -> str:
        task_id = new_task_id()
        data = valid_copy(template, task_id)
        (q / f"{task_id}.json").write_bytes(data[: len(data) // 2])
        return f"{task_id}.json|not a valid task record"

    def link_to_a_valid_record(q: Path) -> str:
        task_id = new_task_id()
        target = outside / f"{task_id}.json"
        target.write_bytes(valid_copy(template, task_id))
        (q / f"{task_id}.json").symlink_to(target)
        return f"{task_id}.json|symbolic link"

    def oversized(q: Path) -> str:
        task_id = new_task_id()
        data = valid_copy(template, task_id)
        (q / f"{task_id}.json").write_bytes(data[:-1] + b" " * MAX_RECORD_BYTES + b"}")
        return f"{task_id}.json|larger than"

    def fifo(q: Path) -> str:
        name = f"{new_task_id()}.json"
        os.mkfifo(q / name)
        return f"{name}|not a regular file"

    def folder(q: Path) -> str:
        name = f"{new_task_id()}.json"
        (q / name).mkdir()
        return f"{name}|not a regular file"

    def under_another_name(q: Path) -> str:
        name = f"{new_task_id()}.json"
        (q / name).write_bytes(valid_copy(template, template.task_id))
        return f"{name}|file name says"

    def not_a_task_id(q: Path) -> str:
        name = f"task_{random.Random().getrandbits(32):x}.json"
        (q / name).write_bytes(valid_copy(template, template.task_id))
        return f"{name}|not named after a task id"

    makers = [
        garbage,
        torn,
        link_to_a_valid_record,
        oversized,
        fifo,
        folder,
        under_another_name,
        not_a_task_id,
    ]
    return {m.__name__: m for m in makers}


async def test_hostile_files_dropped_into_a_live_queue_are_set_aside_and_its_tasks_run_unaffected(
    tmp_path: Path, queue_dir: Path, models_dir: Path, blobs_csv: Path, fault_figures: FaultFigures
) -> None:
    rng = random.Random(SEED + 5)
    outside = tmp_path / "outside"
    outside.mkdir()
    dropped: dict[str, str] = {}  # file name -> the words its reason must contain
    reader = StdioServer(queue_dir, models_dir, tmp_path, "--no-execute")  # a second process that scans too
    with WorkerWatch(queue_dir) as watch, servers(reader):
        async with TrainingService(queue_dir, models_dir, max_concurrent=2, poll_interval_s=0.05) as svc:
            await anyio.to_thread.run_sync(lambda: reader.start().initialize())
            specs = [search(blobs_csv, 8), tiny(blobs_csv)] * 4
            ids = [(await svc.submit(spec, cpu_cores=1)).task_id for spec in specs[:4]]
            makers = hostile_makers(outside, await svc.record(ids[0]))
            with anyio.fail_after(120):
                for _ in range(ROUNDS):
                    for kind, make in rng.sample(sorted(makers.items()), len(makers)):
                        name, words = (await anyio.to_thread.run_sync(make, queue_dir)).split("|")
                        dropped[name] = words
                        await anyio.sleep(rng.uniform(0.0, 0.3))  # pacing: the drops spread over the runs
                        if len(ids) < len(specs):
                            ids.append((await svc.submit(specs[len(ids)], cpu_cores=1)).task_id)
                        page = await svc.list_tasks(limit=100)  # reads go on, here and in the reader
                        assert {t.task_id for t in page.tasks} >= set(ids), kind
                        ok, listed = await anyio.to_thread.run_sync(
                            lambda: reader.call("list_training_tasks", {"limit": 100})
                        )
                        assert ok and {t["task_id"] for t in listed["tasks"]} >= set(ids), (kind, listed)
                await svc.drain(timeout_s=100)
            records = [await svc.record(t) for t in ids]
        orphans = await anyio.to_thread.run_sync(watch.orphans)
    found = await anyio.to_thread.run_sync(audit, queue_dir, models_dir, set(ids), watch)
    fault_figures.record("5 hostile task files", found, orphans)

    corrupt = queue_dir / "corrupt"
    assert sorted(p.name for p in corrupt.iterdir() if not p.name.endswith(".reason.txt")) == sorted(dropped)
    for name, words in dropped.items():
        assert os.path.lexists(corrupt / name), name
        assert words in (corrupt / f"{name}.reason.txt").read_text(), name
        assert not (queue_dir / "logs" / name.replace(".json", ".log")).exists(), f"{name} was run"
    for target in outside.iterdir():  # nothing wrote through a link
        assert TaskRecord.model_validate_json(target.read_bytes()).task_id == target.stem
    assert [r.status for r in records] == [TaskStatus.COMPLETED] * len(specs)
    assert set(read_records(queue_dir)) == set(ids)
    assert found.lost == [] and found.run_twice == [] and found.wrong_endings == []
    assert orphans == []
    assert found.corrupt_left == []
