"""Parallel trials: the 30-trial SVC search of bench_optuna_overhead through the queue, one trial at a time
against n_parallel_trials = the CPUs available, side by side in one run (alternating, 3 rounds each).
Wall time from submit to completed. Goal on a 2-core machine: speedup >= 1.8 (the physical limit is 2.0).

Also printed, to see where the time goes: the search phase alone (metadata timings_s.search: the trials,
without worker start, data load, final fit and saving) and the trials' summed durations (trials.csv), which
differ between the two runs because TPE proposes other parameters when it samples beside running trials.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

import anyio
import pandas as pd
from _common import emit, warm_up
from sklearn.datasets import load_breast_cancer

from mcp_trainer import TaskStatus, TrainingService
from mcp_trainer.trainers.parallel import available_cpus

N_TRIALS, ROUNDS = 30, 3


async def timed(svc: TrainingService, csv: Path, workers: int) -> tuple[float, int, float, float]:
    spec = {
        "task_type": "svm_classification",
        "data_source": str(csv),
        "target_column": "target",
        "n_trials": N_TRIALS,
        "n_parallel_trials": workers,
    }
    t0 = time.perf_counter()
    task = await svc.submit(spec)
    while not (view := svc.status(task.task_id)).status.is_terminal():
        await anyio.sleep(0.02)
    elapsed = time.perf_counter() - t0
    assert view.status is TaskStatus.COMPLETED, view
    record = svc.record(task.task_id)
    assert record.result is not None and record.result.n_trials_completed is not None
    model_dir = Path(record.result.model_dir)
    search_s = float(json.loads((model_dir / "metadata.json").read_text())["timings_s"]["search"])
    trials = pd.read_csv(model_dir / "reports" / "trials.csv")
    work_s = float(pd.to_timedelta(trials["duration"]).dt.total_seconds().sum())
    return elapsed, record.result.n_trials_completed, search_s, work_s


async def main() -> None:
    cpus = available_cpus()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        csv = root / "breast_cancer.csv"
        load_breast_cancer(as_frame=True).frame.to_csv(csv, index=False)
        serial: list[float] = []
        parallel: list[float] = []
        trials: list[int] = []
        search: dict[int, list[float]] = {1: [], cpus: []}
        work: dict[int, list[float]] = {1: [], cpus: []}
        async with TrainingService(root / "queue", root / "models", max_concurrent=1) as svc:
            await warm_up(svc)
            for i in range(ROUNDS):
                seconds, _, search_s, work_s = await timed(svc, csv, 1)
                serial.append(seconds)
                search[1].append(search_s)
                work[1].append(work_s)
                seconds, n, search_s, work_s = await timed(svc, csv, cpus)
                parallel.append(seconds)
                search[cpus].append(search_s)
                work[cpus].append(work_s)
                trials.append(n)
                print(
                    f"round {i + 1}: 1 process {serial[-1]:.3f} s (search {search[1][-1]:.3f} s, trials "
                    f"{work[1][-1]:.3f} s), {cpus} processes {parallel[-1]:.3f} s (search "
                    f"{search[cpus][-1]:.3f} s, trials {work[cpus][-1]:.3f} s, {n} trials)"
                )
    speedup = statistics.median(serial) / statistics.median(parallel)
    search_speedup = statistics.median(search[1]) / statistics.median(search[cpus])
    print(f"speedup {speedup:.2f}x with {cpus} processes (goal >= 1.8 on 2 cores)")
    print(f"search phase alone: {search_speedup:.2f}x")
    emit(
        {
            "benchmark": "parallel_search",
            "cpus": cpus,
            "serial_s": [round(t, 3) for t in serial],
            "parallel_s": [round(t, 3) for t in parallel],
            "trials_parallel": trials,
            "speedup": round(speedup, 3),
            "search_speedup": round(search_speedup, 3),
            "search_s": {str(k): [round(t, 3) for t in v] for k, v in search.items()},
            "trial_work_s": {str(k): [round(t, 3) for t in v] for k, v in work.items()},
        }
    )


if __name__ == "__main__":
    anyio.run(main)
