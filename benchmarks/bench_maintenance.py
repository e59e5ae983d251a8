"""Queue maintenance at scale: archiving 10,000 ended tasks, and reading them back from the archive.

What it measures, on a queue in a temporary directory (10,000 task files like bench_control_plane.py's:
1 % queued, the rest completed, failed or cancelled, ended 40-47 days ago, each with a 2 KB log and a
4 KB study journal):
- `TrainingService.maintain(dry_run=True)`, then `maintain()`: wall time, tasks archived, bytes freed,
  task-file bytes against the archive's bytes;
- with a fresh service (execute=False, as another server would), the first `list_tasks(limit=50)` page
  after start (it builds the archive's index), then p50/p99 over 300 calls of: the first page, a page
  deep in the archive (following next_cursor), and `status` of a random archived task; beside them the
  same calls on the queue before archiving (every task a live file).
No goal is set; the figures say what archiving costs a reader.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import time
from pathlib import Path

import anyio
from _common import emit, summary_ms

from mcp_trainer import TrainingService
from mcp_trainer.ids import new_task_id
from mcp_trainer.records import ErrorKind, Progress, TaskError, TaskRecord, TaskResult, TaskStatus, Transition
from mcp_trainer.specs.tabular import TabularSpec

N_TASKS, CALLS = 10_000, 300
DAY = 86400.0


def write_tasks(queue: Path) -> list[str]:
    """N_TASKS task files with logs and journals; returns the ids of the ended ones."""
    queue.mkdir(parents=True)
    (queue / "logs").mkdir()
    rng = random.Random(0)
    base = time.time() - 47 * DAY
    spec = TabularSpec(task_type="svm_classification", data_source="/data/iris.csv", target_column="species")
    ended: list[str] = []
    for i in range(N_TASKS):
        now = base + i * 60 + rng.random()
        task_id = new_task_id(now)
        waiting = i % 100 == 0
        status = (
            TaskStatus.QUEUED
            if waiting
            else rng.choice(
                [TaskStatus.COMPLETED, TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED]
            )
        )
        record = TaskRecord(
            task_id=task_id,
            user_id=f"user{i % 7}",
            spec=spec,
            status=status,
            created_at=now,
            created_ns=int(now * 1e9),
            history=[Transition(status=TaskStatus.QUEUED, at=now, note="submitted")],
        )
        if not waiting:
            record.attempts, record.started_at, record.finished_at = 1, now + 1, now + 20
            record.history += [
                Transition(status=TaskStatus.RUNNING, at=now + 1),
                Transition(status=status, at=now + 20),
            ]
            record.progress = Progress(percent=100.0, phase="done", trial=50, n_trials=50, best_score=0.95)
            if status is TaskStatus.COMPLETED:
                record.result = TaskResult(
                    model_id="model_" + task_id.removeprefix("task_"),
                    model_dir="/nonexistent",
                    metrics={"accuracy": 0.95},
                    best_params={"kernel": "rbf", "C": 1.0},
                )
            elif status is TaskStatus.FAILED:
                record.error = TaskError(kind=ErrorKind.DATA_ERROR, message="a synthetic failure")
            ended.append(task_id)
            (queue / "work" / task_id).mkdir(parents=True)
            (queue / "work" / task_id / "study.journal").write_bytes(b"j" * 4096)
        (queue / "logs" / f"{task_id}.log").write_bytes(b"l" * 2048)
        (queue / f"{task_id}.json").write_text(record.model_dump_json())
    return ended


async def reads(queue: Path, models: Path, ended: list[str]) -> dict[str, object]:
    rng = random.Random(1)
    figures: dict[str, object] = {}
    async with TrainingService(queue, models, execute=False, maintenance_interval_s=None) as svc:
        t0 = time.perf_counter()
        first = await svc.list_tasks(limit=50)
        figures["first_page_after_start_ms"] = round((time.perf_counter() - t0) * 1000, 1)
        deep_cursor = first.next_cursor
        for _ in range(150):  # 150 pages of 50: past the 100 live tasks, into the archive
            deep_cursor = (await svc.list_tasks(limit=50, cursor=deep_cursor)).next_cursor
        for name, call in (
            ("first_page", lambda: svc.list_tasks(limit=50)),
            ("deep_page", lambda: svc.list_tasks(limit=50, cursor=deep_cursor)),
            ("status_ended", lambda: svc.status(rng.choice(ended))),
        ):
            times = []
            for _ in range(CALLS):
                t0 = time.perf_counter()
                await call()
                times.append(time.perf_counter() - t0)
            figures[name] = summary_ms(times)
    return figures


async def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="bench-maintenance-"))
    try:
        queue, models = root / "queue", root / "models"
        t0 = time.perf_counter()
        ended = write_tasks(queue)
        print(
            f"wrote {N_TASKS} task files, logs and journals in {time.perf_counter() - t0:.1f} s", flush=True
        )
        before = await reads(queue, models, ended)
        print("live files:", before, flush=True)
        async with TrainingService(queue, models, execute=False, maintenance_interval_s=None) as svc:
            t0 = time.perf_counter()
            dry = await svc.maintain(dry_run=True)
            dry_s = time.perf_counter() - t0
            task_bytes = dry.disk.task_files.bytes
            t0 = time.perf_counter()
            done = await svc.maintain()
            run_s = time.perf_counter() - t0
        print(
            f"dry run {dry_s:.2f} s (would archive {dry.archived.count}); run {run_s:.2f} s: archived "
            f"{done.archived.count}, freed {done.archived.bytes:,} bytes; task files {task_bytes:,} bytes -> "
            f"archive {done.disk.archive.bytes:,} bytes in {done.disk.archive.files} file(s)",
            flush=True,
        )
        after = await reads(queue, models, ended)
        print("archived:", after, flush=True)
        emit(
            {
                "tasks": N_TASKS,
                "dry_run_s": round(dry_s, 2),
                "run_s": round(run_s, 2),
                "archived": done.archived.count,
                "task_file_bytes": task_bytes,
                "archive_bytes": done.disk.archive.bytes,
                "before": before,
                "after": after,
            }
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    anyio.run(main)
