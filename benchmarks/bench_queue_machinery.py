"""The queue's machinery per task: N tiny tasks through the queue, against the same fits in a loop.

What it measures, on iris written to a CSV (150 rows): N svm_classification tasks with fixed parameters
(`optimize_hyperparameters=false`, so each is one fit), submitted at once to a service that runs one at a
time (`max_concurrent=1`, `cpu_cores=1`), timed from the first submit until every task is completed and
its worker has exited (its plots drawn: they follow the completed task and hold its slot until then);
beside it, a plain loop doing each task's fit in this process: read the CSV, stratified split, the same
pipeline (impute, scale, one-hot, SVC) fitted and scored on the held-out rows. Machinery per task =
(queue - loop) / N: task files, preflight, worker fork, progress, held-out metrics and permutation
importance, the signed model directory, the report plots. Rounds alternate loop, queue, ...; medians.
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


async def through_queue(svc: TrainingService, task: dict[str, object], n: int) -> float:
    t0 = time.perf_counter()
    ids = [(await svc.submit(task, cpu_cores=1)).task_id for _ in range(n)]
    for task_id in ids:
        view = await svc.wait(task_id, timeout_s=300)
        assert view.status is TaskStatus.COMPLETED, view
    while svc._parts().scheduler.running_ids():  # the last worker draws its plots, then exits
        await anyio.sleep(0.005)
    return time.perf_counter() - t0


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
        queues: list[float] = []
        async with TrainingService(
            root / "queue", root / "models", max_concurrent=1, poll_interval_s=0.05, admission=UNGATED
        ) as svc:
            await warm_up(svc)
            for i in range(rounds):
                loops.append(plain_loop(spec, n))
                queues.append(await through_queue(svc, task, n))
                per_task = (queues[-1] - loops[-1]) / n * 1000
                print(
                    f"round {i + 1}: loop {loops[-1]:.2f} s, queue {queues[-1]:.2f} s for {n} tasks: "
                    f"{per_task:.1f} ms of machinery per task",
                    flush=True,
                )
    per_task_ms = [(q - p) / n * 1000 for q, p in zip(queues, loops, strict=True)]
    median_ms = statistics.median(per_task_ms)
    print(f"machinery per task: median {median_ms:.1f} ms (rounds {[round(v, 1) for v in per_task_ms]})")
    print(f"goal <= {GOAL_MS:g} ms: {'met' if median_ms <= GOAL_MS else 'not met'}")
    print(f"benchmark wall time {time.perf_counter() - started:.1f} s")
    emit(
        {
            "benchmark": "queue_machinery",
            "tasks_per_round": n,
            "rounds": rounds,
            "loop_s": [round(v, 3) for v in loops],
            "queue_s": [round(v, 3) for v in queues],
            "per_task_ms": [round(v, 1) for v in per_task_ms],
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
