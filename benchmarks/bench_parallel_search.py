"""Parallel trials: the 30-trial SVC search of bench_optuna_overhead through the queue, one trial at a time
against n_parallel_trials = the CPUs available, side by side in one run (alternating, 3 rounds each).
Wall time from submit to completed. Goal on a 2-core machine: speedup >= 1.8 (the physical limit is 2.0).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import anyio
from _common import emit
from sklearn.datasets import load_breast_cancer

from mcp_trainer import TaskStatus, TrainingService
from mcp_trainer.trainers.parallel import available_cpus

N_TRIALS, ROUNDS = 30, 3


async def timed(svc: TrainingService, csv: Path, workers: int) -> tuple[float, int]:
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
    return elapsed, record.result.n_trials_completed


async def main() -> None:
    cpus = available_cpus()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        csv = root / "breast_cancer.csv"
        load_breast_cancer(as_frame=True).frame.to_csv(csv, index=False)
        serial: list[float] = []
        parallel: list[float] = []
        trials: list[int] = []
        async with TrainingService(root / "queue", root / "models", max_concurrent=1) as svc:
            while not svc.is_owner:
                await anyio.sleep(0.01)
            assert svc.scheduler is not None
            await anyio.to_thread.run_sync(svc.scheduler.executor.warm_up)
            for i in range(ROUNDS):
                seconds, _ = await timed(svc, csv, 1)
                serial.append(seconds)
                seconds, n = await timed(svc, csv, cpus)
                parallel.append(seconds)
                trials.append(n)
                print(
                    f"round {i + 1}: 1 process {serial[-1]:.3f} s, {cpus} processes {parallel[-1]:.3f} s",
                    end="",
                )
                print(f" ({n} trials)")
    speedup = statistics.median(serial) / statistics.median(parallel)
    print(f"speedup {speedup:.2f}x with {cpus} processes (goal >= 1.8 on 2 cores)")
    emit(
        {
            "benchmark": "parallel_search",
            "cpus": cpus,
            "serial_s": [round(t, 3) for t in serial],
            "parallel_s": [round(t, 3) for t in parallel],
            "trials_parallel": trials,
            "speedup": round(speedup, 3),
        }
    )


if __name__ == "__main__":
    anyio.run(main)
