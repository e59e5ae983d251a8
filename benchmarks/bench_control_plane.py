"""Control plane at scale: start-up and tool latency with 10,000 task files on disk.

Measures, through the in-memory MCP client: the server's start-up (lifespan plus initialize, which loads
every task file), and p50/p99 of submit_training_task, get_task_status and a 50-task
list_training_tasks page. The latency runs use execute=False so no training competes for the CPU.
Goals: start < 2 s; status p99 < 10 ms; submit p99 < 25 ms.
"""

from __future__ import annotations

import csv
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
from _common import emit, summary_ms
from mcp import Client

from mcp_trainer.ids import new_task_id
from mcp_trainer.models import Priority, TaskRecord, TaskResult, TaskStatus, Transition
from mcp_trainer.server import ServerConfig, build_server
from mcp_trainer.specs import SVMSpec

N_FILES, CALLS = 10_000, 300


def write_tasks(queue: Path, csv_path: Path) -> None:
    queue.mkdir(parents=True)
    rng = random.Random(0)
    base = time.time() - N_FILES
    for i in range(N_FILES):
        now = base + i + rng.random()
        status = (
            TaskStatus.QUEUED
            if i % 100 == 0
            else rng.choice(
                [TaskStatus.COMPLETED, TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED]
            )
        )
        record = TaskRecord(
            task_id=new_task_id(now),
            user_id=f"user{i % 7}",
            priority=rng.choice(list(Priority)),
            spec=SVMSpec(task_type="svm_classification", data_source=str(csv_path), target_column="label"),
            status=status,
            created_at=now,
            created_ns=int(now * 1e9),
            history=[Transition(status=TaskStatus.QUEUED, at=now)]
            + ([] if status is TaskStatus.QUEUED else [Transition(status=status, at=now + 1)]),
        )
        if status is TaskStatus.COMPLETED:
            record.result = TaskResult(
                model_id="model_" + record.task_id.removeprefix("task_"),
                model_dir="/tmp/x",
                metrics={"accuracy": 0.9},
            )
        (queue / f"{record.task_id}.json").write_text(record.model_dump_json())


async def timed(client: Client, name: str, args: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    t0 = time.perf_counter()
    result = await client.call_tool(name, args)
    elapsed = time.perf_counter() - t0
    assert not result.is_error and result.structured_content is not None, result.content
    return elapsed, result.structured_content


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = root / "small.csv"
        with open(data, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["a", "b", "label"])
            w.writerows([[i % 13, (i * 7) % 11, "xy"[i % 2]] for i in range(150)])
        queue = root / "queue"
        t0 = time.perf_counter()
        write_tasks(queue, data)
        print(f"wrote {N_FILES} task files in {time.perf_counter() - t0:.1f} s")

        startups: dict[str, float] = {}
        for execute in (False, True):
            server = build_server(ServerConfig(queue_dir=queue, models_dir=root / "models", execute=execute))
            t0 = time.perf_counter()
            async with Client(server, mode="legacy") as client:
                startups[f"execute_{execute}"] = time.perf_counter() - t0
                await client.call_tool("get_queue_status", {})
            print(f"start-up (execute={execute}): {startups[f'execute_{execute}']:.3f} s")

        server = build_server(ServerConfig(queue_dir=queue, models_dir=root / "models", execute=False))
        async with Client(server, mode="legacy") as client:
            submit: list[float] = []
            ids: list[str] = []
            args = {"task_type": "svm_classification", "data_source": str(data), "target_column": "label"}
            for _ in range(CALLS):
                seconds, out = await timed(client, "submit_training_task", args)
                submit.append(seconds)
                ids.append(out["task_id"])
            status = [
                (await timed(client, "get_task_status", {"task_id": ids[i % len(ids)]}))[0]
                for i in range(CALLS)
            ]
            page: list[float] = []
            cursor = None
            for _ in range(CALLS):
                seconds, out = await timed(
                    client,
                    "list_training_tasks",
                    {"limit": 50, "cursor": cursor} if cursor else {"limit": 50},
                )
                page.append(seconds)
                cursor = out["next_cursor"]
    figures = {
        "benchmark": "control_plane",
        "task_files": N_FILES,
        "startup_s": {k: round(v, 3) for k, v in startups.items()},
        "submit": summary_ms(submit),
        "status": summary_ms(status),
        "list_page_50": summary_ms(page),
    }
    for name in ("submit", "status", "list_page_50"):
        f = figures[name]
        print(f"{name}: p50 {f['p50_ms']} ms, p99 {f['p99_ms']} ms")  # type: ignore[index]
    print("goals: start < 2 s; status p99 < 10 ms; submit p99 < 25 ms")
    emit(figures)


if __name__ == "__main__":
    anyio.run(main)
