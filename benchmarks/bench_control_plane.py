"""Control plane at scale: start-up and tool latency with 10,000 task files on disk.

What it measures, through the in-memory MCP client (`mcp.Client(server, mode="legacy")`):
- start-up: the time to enter `Client(build_server(ServerConfig(...)))`, i.e. the server's lifespan
  (TaskStore loads every task file) plus the MCP initialize handshake, with execute=False and with
  execute=True, alternating, three times each. The queued task files name a valid small CSV, so with
  execute=True the service really claims and starts up to max_concurrent of them (their workers are
  stopped and the tasks handed back to the queue when the client exits; that exit is not timed).
- latency, p50/p99 over 300 calls each, of submit_training_task (a small iris CSV), get_task_status
  (random ids among the 10,000 files and the submitted tasks) and list_training_tasks(limit=50)
  (first page, and following next_cursor through the pages). These runs use execute=False, so no
  training competes for the 2 CPUs. The first page is timed once more with the Python MCP client's
  jsonschema check of the result against the tool's outputSchema switched off, to show how much of the
  list latency is the client's validation rather than the server.
Goals: start-up < 2 s; get_task_status p99 < 10 ms; submit_training_task p99 < 25 ms.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import psutil
from _common import emit, summary_ms
from mcp import Client
from mcp.client.session import ClientSession
from sklearn.datasets import load_iris

from mcp_trainer.ids import new_task_id
from mcp_trainer.records import (
    ErrorKind,
    Priority,
    Progress,
    TaskError,
    TaskRecord,
    TaskResult,
    TaskStatus,
    Transition,
)
from mcp_trainer.server import ServerConfig, build_server
from mcp_trainer.specs.tabular import TabularSpec

N_FILES, CALLS, STARTUP_ROUNDS = 10_000, 300, 3
GOALS = {"startup_s": 2.0, "status_p99_ms": 10.0, "submit_p99_ms": 25.0}


def write_tasks(queue: Path, csv_path: Path) -> list[str]:
    """N_FILES task files: 1 % queued, the rest completed, failed or cancelled. Returns their ids."""
    queue.mkdir(parents=True)
    rng = random.Random(0)
    base = time.time() - 30 * 86400
    ids: list[str] = []
    seen: set[str] = set()
    spec = TabularSpec(task_type="svm_classification", data_source=str(csv_path), target_column="species")
    for i in range(N_FILES):
        now = base + i * 60 + rng.random()  # one task a minute: distinct seconds, distinct ids
        task_id = new_task_id(now)
        assert task_id not in seen
        seen.add(task_id)
        status = (
            TaskStatus.QUEUED
            if i % 100 == 0
            else rng.choice(
                [TaskStatus.COMPLETED, TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED]
            )
        )
        record = TaskRecord(
            task_id=task_id,
            user_id=f"user{i % 7}",
            priority=rng.choice(list(Priority)),
            spec=spec,
            status=status,
            created_at=now,
            created_ns=int(now * 1e9),
            history=[Transition(status=TaskStatus.QUEUED, at=now, note="submitted")],
        )
        if status is not TaskStatus.QUEUED:
            record.attempts = 1
            record.started_at = now + 1
            record.finished_at = now + 20
            record.history += [
                Transition(status=TaskStatus.RUNNING, at=now + 1, note="attempt 1"),
                Transition(status=status, at=now + 20),
            ]
            record.progress = Progress(percent=100.0, phase="done", trial=50, n_trials=50, best_score=0.95)
        if status is TaskStatus.COMPLETED:
            record.result = TaskResult(
                model_id="model_" + task_id.removeprefix("task_"),
                model_dir=f"/nonexistent/model_{task_id.removeprefix('task_')}",
                metrics={"accuracy": 0.95, "f1_macro": 0.94},
                cv_score=0.95,
                best_params={"kernel": "rbf", "C": 1.0, "gamma": 0.1},
                n_trials_completed=50,
            )
        elif status is TaskStatus.FAILED:
            record.error = TaskError(kind=ErrorKind.DATA_ERROR, message="a synthetic failure", hint="none")
        (queue / f"{task_id}.json").write_text(record.model_dump_json())
        ids.append(task_id)
    return ids


async def call(client: Client, name: str, args: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    t0 = time.perf_counter()
    result = await client.call_tool(name, args)
    elapsed = time.perf_counter() - t0
    assert not result.is_error and result.structured_content is not None, result.content
    return elapsed, result.structured_content


async def startup(queue: Path, models: Path, execute: bool) -> tuple[float, dict[str, Any]]:
    server = build_server(ServerConfig(queue_dir=queue, models_dir=models, execute=execute))
    t0 = time.perf_counter()
    async with Client(server, mode="legacy") as client:
        elapsed = time.perf_counter() - t0
        _, status = await call(client, "get_queue_status", {})
        if execute:
            # Let the owner claim tasks and their workers report in before the client exits: an exit while
            # a worker is still being started leaves its task "running" on disk (see the report).
            with anyio.move_on_after(10):
                while True:
                    _, status = await call(client, "get_queue_status", {})
                    _, page = await call(client, "list_training_tasks", {"status": "running", "limit": 10})
                    if status["running"] and all(t["phase"] != "starting" for t in page["tasks"]):
                        break
                    await anyio.sleep(0.05)
    return elapsed, status


async def main() -> None:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = root / "iris.csv"
        iris = load_iris(as_frame=True)
        frame = iris.frame.rename(columns={"target": "species"})
        frame["species"] = [str(iris.target_names[i]) for i in frame["species"]]
        frame.to_csv(data, index=False)
        queue, models = root / "queue", root / "models"
        t0 = time.perf_counter()
        all_ids = write_tasks(queue, data)
        print(f"wrote {N_FILES} task files in {time.perf_counter() - t0:.1f} s", flush=True)

        startups: dict[str, list[float]] = {"execute_false": [], "execute_true": []}
        for i in range(STARTUP_ROUNDS):
            for execute in (False, True):
                seconds, qs = await startup(queue, models, execute)
                startups[f"execute_{str(execute).lower()}"].append(seconds)
                print(
                    f"start-up round {i + 1}, execute={execute}: {seconds:.3f} s "
                    f"(queue status then: {qs['running']} running, {qs['queued']} waiting, "
                    f"this process executes: {qs['this_process_executes']})",
                    flush=True,
                )

        print("latency runs: execute=False (no training competes for the CPU)", flush=True)
        # No cap on waiting tasks: 1% of a large queue waits already, more than the default cap.
        server = build_server(
            ServerConfig(queue_dir=queue, models_dir=models, execute=False, max_queued=None)
        )
        rng = random.Random(1)
        async with Client(server, mode="legacy") as client:
            await call(client, "get_queue_status", {})  # first-call costs out of the way
            submit: list[float] = []
            args = {"task_type": "svm_classification", "data_source": str(data), "target_column": "species"}
            for _ in range(CALLS):
                seconds, out = await call(client, "submit_training_task", args)
                submit.append(seconds)
                all_ids.append(out["task_id"])
            status: list[float] = []
            for _ in range(CALLS):
                status.append((await call(client, "get_task_status", {"task_id": rng.choice(all_ids)}))[0])
            first_page: list[float] = []
            for _ in range(CALLS):
                seconds, out = await call(client, "list_training_tasks", {"limit": 50})
                assert len(out["tasks"]) == 50 and out["total"] == len(all_ids)
                first_page.append(seconds)
            # The same first page with the client's jsonschema check of structured_content switched off,
            # to separate the server's share from the Python MCP client's own validation.
            unvalidated: list[float] = []
            original = ClientSession.validate_tool_result

            async def no_validation(self: ClientSession, name: str, result: Any) -> None:
                return None

            ClientSession.validate_tool_result = no_validation  # type: ignore[method-assign]
            try:
                for _ in range(CALLS):
                    unvalidated.append((await call(client, "list_training_tasks", {"limit": 50}))[0])
            finally:
                ClientSession.validate_tool_result = original  # type: ignore[method-assign]
            paging: list[float] = []
            cursor: str | None = None
            for _ in range(CALLS):
                seconds, out = await call(
                    client, "list_training_tasks", {"limit": 50, **({"cursor": cursor} if cursor else {})}
                )
                paging.append(seconds)
                cursor = out["next_cursor"]
    rss_mb = round(psutil.Process().memory_info().rss / 2**20, 1)
    figures: dict[str, Any] = {
        "benchmark": "control_plane",
        "rss_mb_after_latency_runs": rss_mb,
        "task_files": N_FILES,
        "calls_each": CALLS,
        "latency_execute": False,
        "startup_s": {k: [round(v, 3) for v in vs] for k, vs in startups.items()},
        "startup_median_s": {k: round(statistics.median(vs), 3) for k, vs in startups.items()},
        "submit": summary_ms(submit),
        "status": summary_ms(status),
        "list_first_page_50": summary_ms(first_page),
        "list_paging_50": summary_ms(paging),
        "list_first_page_50_without_client_validation": summary_ms(unvalidated),
    }
    figures["startup_max_s"] = round(max(max(vs) for vs in startups.values()), 3)
    figures["goals_met"] = {
        "startup_median_lt_2s": max(figures["startup_median_s"].values()) < GOALS["startup_s"],
        "startup_every_run_lt_2s": figures["startup_max_s"] < GOALS["startup_s"],
        "status_p99_lt_10ms": figures["status"]["p99_ms"] < GOALS["status_p99_ms"],
        "submit_p99_lt_25ms": figures["submit"]["p99_ms"] < GOALS["submit_p99_ms"],
    }
    for k, v in figures["startup_median_s"].items():
        print(f"start-up {k}: median {v} s, all {figures['startup_s'][k]}")
    for name in (
        "submit",
        "status",
        "list_first_page_50",
        "list_paging_50",
        "list_first_page_50_without_client_validation",
    ):
        f = figures[name]
        print(f"{name}: p50 {f['p50_ms']} ms, p99 {f['p99_ms']} ms, mean {f['mean_ms']} ms")
    print(f"RSS of this process (server and client in one) after the latency runs: {rss_mb} MB")
    print(f"goals (start < 2 s; status p99 < 10 ms; submit p99 < 25 ms): {figures['goals_met']}")
    print(f"benchmark wall time {time.perf_counter() - started:.1f} s")
    emit(figures)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=N_FILES, help="task files in the queue (10,000)")
    N_FILES = parser.parse_args().files
    anyio.run(main)
