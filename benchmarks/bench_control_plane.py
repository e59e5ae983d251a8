"""Control plane at scale: a real server process on a queue of N task files (issue 13's 100,000 row).

Each server is `python -m mcp_trainer` on stdio, started by the MCP client here as an MCP host starts it;
its RSS is read from that process alone (psutil), never from this one. What is measured, per version:
- start to first answer: from spawning the process to the answer of its first get_queue_status (Python's
  start, the imports, the store's load of every task file, the MCP handshake). The first start on the
  files as written is "cold" (no index of them yet); the later ones "warm". Execute off and on alternate;
  with execute on, the server claims and starts up to 3 of the queued tasks before it exits.
- latency, p50/p99 over --calls calls each, execute off (no training competes for the CPUs):
  submit_training_task (a small iris CSV), get_task_status (random ids among the files and the tasks
  submitted), list_training_tasks(limit=50) first page, and following next_cursor through the pages;
- the server's RSS after its start-up and after the latency runs; and of an idle server on an empty queue.

Side by side: `--compare DIR` names a second checkout of mcp-trainer (e.g. `git worktree add ../base
3e407b4`); its server runs from it (PYTHONPATH), on a copy of the same queue, the two alternating round by
round (the order flipped each round). Without it, one version runs: the one this interpreter imports.
Goals (issue 13): start ≤ 3 s; status p99 ≤ 5 ms; submit p99 ≤ 25 ms; list page p99 ≤ 30 ms; server RSS
≤ 250 MB with 100,000 files; idle server RSS on an empty queue ≤ 90 MB.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import psutil
from _common import emit, summary_ms
from mcp import Client, StdioServerParameters
from sklearn.datasets import load_iris

import mcp_trainer
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
from mcp_trainer.specs.tabular import TabularSpec

GOALS = {"startup_s": 3.0, "status_p99_ms": 5.0, "submit_p99_ms": 25.0, "list_p99_ms": 30.0, "rss_mb": 250.0}
IDLE_RSS_GOAL_MB = 90.0


def write_tasks(queue: Path, csv_path: Path, n: int) -> list[str]:
    """`n` task files: 1 % queued, the rest completed, failed or cancelled. Returns their ids."""
    queue.mkdir(parents=True)
    rng = random.Random(0)
    base = time.time() - 30 * 86400
    ids: list[str] = []
    seen: set[str] = set()
    spec = TabularSpec(task_type="svm_classification", data_source=str(csv_path), target_column="species")
    for i in range(n):
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


class Version:
    """One checkout of mcp-trainer, its own copy of the queue, and the figures of its server."""

    def __init__(self, label: str, package_root: Path, queue: Path, models: Path) -> None:
        self.label, self.package_root, self.queue, self.models = label, package_root, queue, models
        self.figures: dict[str, list[float]] = {}

    def add(self, name: str, value: float) -> None:
        self.figures.setdefault(name, []).append(value)

    def params(self, execute: bool, max_queued: int = 1000) -> StdioServerParameters:
        args = ["-m", "mcp_trainer", "--queue-dir", str(self.queue), "--models-dir", str(self.models)]
        args += ["--max-queued", str(max_queued), "--log-level", "WARNING"]
        args += ["--cpu-threshold", "100", "--memory-threshold", "100", "--disk-threshold", "100"]
        if not execute:
            args.append("--no-execute")
        # `python -m` puts the working directory first on sys.path: it must be the version's checkout.
        root = str(self.package_root)
        return StdioServerParameters(command=sys.executable, args=args, env={"PYTHONPATH": root}, cwd=root)


def server_rss_mb(queue: Path) -> float:
    """The RSS of the server process (a child of this one) serving `queue`."""
    for child in psutil.Process().children(recursive=True):
        try:
            cmdline = child.cmdline()
            if "mcp_trainer" in cmdline and str(queue) in cmdline:
                return round(child.memory_info().rss / 2**20, 1)
        except psutil.NoSuchProcess:
            continue
    raise RuntimeError(f"no server process found for {queue}")


async def call(client: Client, name: str, args: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    t0 = time.perf_counter()
    result = await client.call_tool(name, args)
    elapsed = time.perf_counter() - t0
    assert not result.is_error and result.structured_content is not None, result.content
    return elapsed, result.structured_content


async def startup(v: Version, execute: bool, tag: str) -> None:
    """Spawn the server, time it to its first answer, read its RSS, let it exit."""
    t0 = time.perf_counter()
    async with Client(v.params(execute), mode="legacy") as client:
        _, status = await call(client, "get_queue_status", {})
        seconds = time.perf_counter() - t0
        rss = server_rss_mb(v.queue)
    v.add(f"startup_{tag}_s", seconds)
    v.add("rss_after_startup_mb", rss)
    print(
        f"  {v.label}: start ({tag}, execute={execute}) {seconds:.2f} s to first answer, RSS {rss} MB "
        f"({status['queued']} waiting, {status['running']} running)",
        flush=True,
    )


async def latency(v: Version, ids: list[str], data: Path, calls: int) -> None:
    """The latency runs, in a server with execute off and no effective cap on waiting tasks."""
    rng = random.Random(1)
    async with Client(v.params(False, max_queued=10_000_000), mode="legacy") as client:
        await call(client, "get_queue_status", {})
        runs: dict[str, list[float]] = {"submit": [], "status": [], "list_first_page": [], "list_paging": []}
        args = {"task_type": "svm_classification", "data_source": str(data), "target_column": "species"}
        mine = list(ids)
        for _ in range(calls):
            seconds, out = await call(client, "submit_training_task", args)
            runs["submit"].append(seconds)
            mine.append(out["task_id"])
        for _ in range(calls):
            runs["status"].append((await call(client, "get_task_status", {"task_id": rng.choice(mine)}))[0])
        for _ in range(calls):
            seconds, out = await call(client, "list_training_tasks", {"limit": 50})
            assert len(out["tasks"]) == 50
            runs["list_first_page"].append(seconds)
        cursor: str | None = None
        for _ in range(calls):
            seconds, out = await call(
                client, "list_training_tasks", {"limit": 50, **({"cursor": cursor} if cursor else {})}
            )
            runs["list_paging"].append(seconds)
            cursor = out["next_cursor"]
        rss = server_rss_mb(v.queue)
    v.add("rss_after_latency_mb", rss)
    for name, values in runs.items():
        s = summary_ms(values)
        v.add(f"{name}_p50_ms", s["p50_ms"])
        v.add(f"{name}_p99_ms", s["p99_ms"])
    line = ", ".join(
        f"{k} p50/p99 {v.figures[f'{k}_p50_ms'][-1]}/{v.figures[f'{k}_p99_ms'][-1]} ms" for k in runs
    )
    print(f"  {v.label}: {line}; RSS after {rss} MB", flush=True)


async def idle(v: Version, root: Path) -> tuple[float, float]:
    """A server on an empty queue: its start to first answer (s), and its RSS then (MB)."""
    empty = Version(v.label, v.package_root, root / f"empty-{v.label}", root / f"empty-models-{v.label}")
    t0 = time.perf_counter()
    async with Client(empty.params(False), mode="legacy") as client:
        await call(client, "get_queue_status", {})
        seconds = round(time.perf_counter() - t0, 3)
        rss = server_rss_mb(empty.queue)
        _, info = await call(client, "get_queue_status", {})
    assert info["queue_dir"] == str(empty.queue)
    return seconds, rss


def med(values: list[float]) -> dict[str, float]:
    return {k: round(f(values), 3) for k, f in (("median", statistics.median), ("min", min), ("max", max))}


async def main(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    here = Path(mcp_trainer.__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = root / "iris.csv"
        iris = load_iris(as_frame=True)
        frame = iris.frame.rename(columns={"target": "species"})
        frame["species"] = [str(iris.target_names[i]) for i in frame["species"]]
        frame.to_csv(data, index=False)
        versions = [Version("this", here, root / "queue-this", root / "models-this")]
        if args.compare:
            versions.append(
                Version("compare", args.compare.resolve(), root / "queue-cmp", root / "models-cmp")
            )
        t0 = time.perf_counter()
        ids = write_tasks(versions[0].queue, data, args.files)
        for v in versions[1:]:
            await anyio.run_process(["cp", "-a", str(versions[0].queue), str(v.queue)])
        os.sync()  # the setup's writes reach the disk now, not in the fsyncs of the first timed submits
        print(f"wrote {args.files} task files per queue in {time.perf_counter() - t0:.1f} s", flush=True)
        empty = {v.label: await idle(v, root) for v in versions}
        idle_rss = {label: rss for label, (_, rss) in empty.items()}
        print(f"a server on an empty queue, (start to first answer s, RSS MB): {empty}", flush=True)
        for i in range(args.rounds):
            order = versions if i % 2 == 0 else versions[::-1]
            print(f"round {i + 1}: {' then '.join(v.label for v in order)}", flush=True)
            for v in order:
                await startup(v, False, "cold" if i == 0 else "warm")
                await startup(v, True, "warm")
                await latency(v, ids, data, args.calls)
    figures: dict[str, Any] = {
        "benchmark": "control_plane",
        "task_files": args.files,
        "calls_each": args.calls,
        "rounds": args.rounds,
        "rss_of": "the server process alone (stdio child of this one)",
        "versions": {v.label: str(v.package_root) for v in versions},
        "idle_rss_mb": idle_rss,
        "empty_queue_startup_s": {label: seconds for label, (seconds, _) in empty.items()},
    }
    for v in versions:
        figures[v.label] = {name: med(values) for name, values in v.figures.items()}
    this = figures["this"]
    figures["goals_met_this"] = {
        "startup_warm_le_3s": this["startup_warm_s"]["max"] <= GOALS["startup_s"],
        "status_p99_le_5ms": this["status_p99_ms"]["median"] <= GOALS["status_p99_ms"],
        "submit_p99_le_25ms": this["submit_p99_ms"]["median"] <= GOALS["submit_p99_ms"],
        "list_p99_le_30ms": max(this[k]["median"] for k in ("list_first_page_p99_ms", "list_paging_p99_ms"))
        <= GOALS["list_p99_ms"],
        "rss_le_250mb": this["rss_after_latency_mb"]["max"] <= GOALS["rss_mb"],
        "idle_rss_le_90mb": idle_rss["this"] <= IDLE_RSS_GOAL_MB,
    }
    print("medians (min-max) over rounds:")
    for name in sorted(versions[0].figures):
        cells = [
            f"{v.label} {m['median']} ({m['min']}-{m['max']})"
            for v in versions
            if (m := med(v.figures[name]))
        ]
        ratio = ""
        if len(versions) == 2 and (other := statistics.median(versions[1].figures[name])):
            ratio = f"  ratio {statistics.median(versions[0].figures[name]) / other:.3f}"
        print(f"  {name}: {' | '.join(cells)}{ratio}")
    print(f"goals met (this): {figures['goals_met_this']}")
    print(f"benchmark wall time {time.perf_counter() - started:.1f} s")
    emit(figures)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=10_000, help="task files in the queue (10,000)")
    parser.add_argument("--calls", type=int, default=300, help="calls per latency figure (300)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, each version once a round (3)")
    parser.add_argument("--compare", type=Path, help="a second checkout of mcp-trainer to run side by side")
    anyio.run(main, parser.parse_args())
