"""The queue's machinery per task: N tiny tasks through the queue, against the same fits in a loop.

What it measures, on iris written to a CSV (150 rows): N svm_classification tasks with fixed parameters
(`optimize_hyperparameters=false`, so each is one fit), submitted at once to a service that runs one at a
time (`max_concurrent=1`, `cpu_cores=1`), timed from the first submit until every task is completed (its
model saved and usable: the goal's figure), and until every worker has exited (its permutation
importances and plots drawn: they follow the completed task, on idle CPU time only, beside the next task);
beside it, a plain loop doing each task's fit in this process: read the CSV, stratified split, the same
pipeline (impute, scale, one-hot, SVC) fitted and scored on the held-out rows. Machinery per task =
(queue - loop) / N: task files, preflight, worker fork, progress, held-out metrics, the signed model
directory (and, in the second figure, permutation importances and the report plots). Rounds alternate
loop, queue, ...; medians.
Goal (issue 13): <= 50 ms per task, plots on.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import anyio
import pandas as pd
from _common import UNGATED, emit, warm_up
from sklearn.datasets import load_iris
from sklearn.model_selection import train_test_split

from mcp_trainer import TaskStatus, TrainingService
from mcp_trainer.specs.tabular import TabularSpec
from mcp_trainer.trainers.tabular.data import load_tabular
from mcp_trainer.trainers.tabular.suggest import estimator_for, fixed_params

GOAL_MS = 50.0


def plain_loop(spec: TabularSpec, n: int) -> float:
    """The same fits in a loop, as a script would do them; seconds."""
    t0 = time.perf_counter()
    for _ in range(n):
        data = load_tabular(spec)
        X_train, X_test, y_train, y_test = train_test_split(
            data.X, data.y, test_size=spec.test_size, random_state=spec.random_state, stratify=data.y
        )
        model = estimator_for(spec, data, spec.family, fixed_params(spec))
        model.fit(X_train, y_train)
        model.score(X_test, y_test)
    return time.perf_counter() - t0


async def through_queue(svc: TrainingService, task: dict[str, object], n: int) -> tuple[float, float]:
    """Seconds from the first submit until every task is completed (its model usable), and until every
    worker has exited (its importances and plots drawn)."""
    t0 = time.perf_counter()
    ids = [(await svc.submit(task, cpu_cores=1)).task_id for _ in range(n)]
    pending = set(ids)
    while pending:  # polled, not waited on one by one: a later task may complete first
        for task_id in list(pending):
            view = await svc.status(task_id)
            if view.status.is_terminal():
                assert view.status is TaskStatus.COMPLETED, view
                pending.discard(task_id)
        await anyio.sleep(0.002)
    completed = time.perf_counter() - t0
    while svc._parts().scheduler.running_ids():  # the last workers draw their plots, then exit
        await anyio.sleep(0.005)
    return completed, time.perf_counter() - t0


async def main(n: int, rounds: int) -> None:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = root / "iris.csv"
        frame = load_iris(as_frame=True).frame
        frame["target"] = frame["target"].map(dict(enumerate(load_iris().target_names)))
        pd.DataFrame(frame).to_csv(data, index=False)
        task = {
            "task_type": "svm_classification",
            "data_source": str(data),
            "target_column": "target",
            "optimize_hyperparameters": False,
        }
        spec = TabularSpec.model_validate(task)
        loops: list[float] = []
        queues: list[float] = []  # to the last task completed
        drawn: list[float] = []  # to the last worker gone (plots drawn)
        async with TrainingService(
            root / "queue", root / "models", max_concurrent=1, poll_interval_s=0.05, admission=UNGATED
        ) as svc:
            await warm_up(svc)
            for i in range(rounds):
                loops.append(plain_loop(spec, n))
                completed, gone = await through_queue(svc, task, n)
                queues.append(completed)
                drawn.append(gone)
                print(
                    f"round {i + 1}: loop {loops[-1]:.2f} s; queue {completed:.2f} s to the last completed, "
                    f"{gone:.2f} s to the last plots drawn, for {n} tasks: "
                    f"{(completed - loops[-1]) / n * 1000:.1f} / {(gone - loops[-1]) / n * 1000:.1f} ms of "
                    "machinery per task",
                    flush=True,
                )
    per_task_ms = [(q - p) / n * 1000 for q, p in zip(queues, loops, strict=True)]
    drawn_ms = [(q - p) / n * 1000 for q, p in zip(drawn, loops, strict=True)]
    median_ms = statistics.median(per_task_ms)
    rounds_ms = [round(v, 1) for v in per_task_ms]
    print(f"machinery per task, to completed: median {median_ms:.1f} ms (rounds {rounds_ms})")
    print(
        f"machinery per task, to every plot drawn: median {statistics.median(drawn_ms):.1f} ms "
        f"(rounds {[round(v, 1) for v in drawn_ms]})"
    )
    print(f"goal <= {GOAL_MS:g} ms: {'met' if median_ms <= GOAL_MS else 'not met'}")
    print(f"benchmark wall time {time.perf_counter() - started:.1f} s")
    emit(
        {
            "benchmark": "queue_machinery",
            "tasks_per_round": n,
            "rounds": rounds,
            "loop_s": [round(v, 3) for v in loops],
            "queue_s": [round(v, 3) for v in queues],
            "queue_drawn_s": [round(v, 3) for v in drawn],
            "per_task_ms": [round(v, 1) for v in per_task_ms],
            "per_task_drawn_ms": [round(v, 1) for v in drawn_ms],
            "median_per_task_ms": round(median_ms, 1),
            "goal_ms": GOAL_MS,
            "goal_met": median_ms <= GOAL_MS,
        }
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    anyio.run(main, args.tasks, args.rounds)
