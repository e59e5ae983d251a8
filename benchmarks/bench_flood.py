"""Status calls while another server floods the queue directory.

One process submits task files into a shared queue as fast as it can (up to 10,000), while this process
serves a TrainingService on the same queue and, concurrently on its event loop: lists tasks (each list
rescans the changed directory), asks for one task's status again and again, and ticks a heartbeat that
measures how long the loop is ever stalled.

Two rounds side by side on the same flood: `threads` is the service as it is (every file read in a
worker thread); `on-loop` calls the same store methods directly on the event loop, as the service did
before, to show what moving them off the loop buys. Prints status latency p50/p99, the longest loop
stall, and the lists served, then a last line of JSON.
"""

from __future__ import annotations

import argparse
import multiprocessing
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
from _common import emit, summary_ms

from mcp_trainer import TabularSpec, TaskRecord, TrainingService
from mcp_trainer.engine.layout import QueueLayout
from mcp_trainer.engine.store import TaskStore
from mcp_trainer.ids import new_task_id


def flood(queue: str, count: int, started: Any) -> None:
    """Another server's submissions: `count` task files, written as fast as the store allows."""
    store = TaskStore(QueueLayout.at(queue))
    spec = TabularSpec(task_type="svm_classification", data_source="sklearn:iris")
    started.set()
    for _ in range(count):
        store.create(TaskRecord(task_id=new_task_id(), spec=spec))


async def measure(queue: Path, models: Path, count: int, on_loop: bool) -> dict[str, float]:
    async with TrainingService(queue, models, execute=False) as svc:
        mine = (await svc.submit({"task_type": "svm_classification", "data_source": "sklearn:iris"})).task_id
        spawn = multiprocessing.get_context("spawn")
        started = spawn.Event()
        flooder = spawn.Process(target=flood, args=(str(queue), count, started))
        flooder.start()
        started.wait()
        store = svc._parts().store  # the on-loop round reaches past the API, as the old code did
        latencies: list[float] = []
        stalls: list[float] = []
        lists = 0

        async def status() -> None:
            while flooder.is_alive():
                t0 = time.perf_counter()
                if on_loop:
                    svc._view(svc._record(mine))
                else:
                    await svc.status(mine)
                latencies.append(time.perf_counter() - t0)
                await anyio.sleep(0.005)

        async def lister() -> None:
            nonlocal lists
            while flooder.is_alive():
                if on_loop:
                    store.refresh()
                    await anyio.lowlevel.checkpoint()
                else:
                    await svc.list_tasks(limit=1)
                lists += 1

        async def heartbeat() -> None:
            while flooder.is_alive():
                t0 = time.perf_counter()
                await anyio.sleep(0.001)
                stalls.append(time.perf_counter() - t0 - 0.001)

        wall = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for job in (status, lister, heartbeat):
                tg.start_soon(job)
        wall = time.perf_counter() - wall
        flooder.join()
    figures = summary_ms(latencies)
    return {
        "status_p50_ms": figures["p50_ms"],
        "status_p99_ms": figures["p99_ms"],
        "status_calls": len(latencies),
        "max_loop_stall_ms": round(max(stalls) * 1000, 1),
        "lists": lists,
        "flood_s": round(wall, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000, help="task files the other server writes")
    args = parser.parse_args()
    results: dict[str, Any] = {"files": args.files}
    for mode in ("threads", "on-loop"):
        with tempfile.TemporaryDirectory() as tmp:
            figures = anyio.run(
                measure, Path(tmp) / "queue", Path(tmp) / "models", args.files, mode == "on-loop"
            )
        results[mode] = figures
        print(
            f"{mode:8s} status p50 {figures['status_p50_ms']:.2f} ms, p99 {figures['status_p99_ms']:.2f} ms "
            f"over {figures['status_calls']} calls; longest loop stall {figures['max_loop_stall_ms']} ms; "
            f"{figures['lists']} lists; flood of {args.files} files took {figures['flood_s']} s",
            flush=True,
        )
    emit(results)


if __name__ == "__main__":
    main()
