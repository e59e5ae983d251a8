"""Optuna overhead of the queue: one 30-trial SVC search, as a plain Optuna script and through the queue.

Both sides read the same CSV (scikit-learn's breast_cancer), split it the same way, search the same space
with the same seeded TPE sampler and 5-fold stratified CV, then fit the best model and score it on the
held-out split. The queue side is timed from `submit` to the task's completed state, worker start, journal
storage and artifact writing included; the server is up and its forkserver warm before timing (as it is
for every task but the first after start-up). Runs alternate, five of each. Goal: ratio <= 1.10.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import anyio
import optuna
import pandas as pd
from _common import emit
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import StratifiedKFold, cross_val_score, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from mcp_trainer import TaskStatus, TrainingService

N_TRIALS, FOLDS, SEED, TEST_SIZE, ROUNDS = 30, 5, 42, 0.2, 5


def plain_search(csv: Path) -> tuple[float, float]:
    """What a user would write by hand. Returns (seconds, best CV score)."""
    t0 = time.perf_counter()
    frame = pd.read_csv(csv)
    X, y = frame.drop(columns="target"), frame["target"]
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=TEST_SIZE, random_state=SEED, stratify=y
    )
    cv = StratifiedKFold(FOLDS, shuffle=True, random_state=SEED)

    def objective(trial: optuna.Trial) -> float:
        kernel = trial.suggest_categorical("kernel", ["linear", "rbf", "poly", "sigmoid"])
        params: dict[str, object] = {"kernel": kernel, "C": trial.suggest_float("C", 1e-3, 1e3, log=True)}
        if kernel != "linear":
            params["gamma"] = trial.suggest_float("gamma", 1e-4, 1e1, log=True)
        if kernel == "poly":
            params["degree"] = trial.suggest_int("degree", 2, 4)
        model = make_pipeline(StandardScaler(), SVC(**params, random_state=SEED))  # type: ignore[arg-type]
        return float(cross_val_score(model, X_train, y_train, cv=cv, scoring="accuracy").mean())

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=SEED))
    study.optimize(objective, n_trials=N_TRIALS)
    best = make_pipeline(StandardScaler(), SVC(**study.best_params, random_state=SEED))
    best.fit(X_train, y_train)
    best.score(X_test, y_test)
    return time.perf_counter() - t0, float(study.best_value)


async def queue_search(svc: TrainingService, csv: Path) -> tuple[float, float]:
    spec = {
        "task_type": "svm_classification",
        "data_source": str(csv),
        "target_column": "target",
        "n_trials": N_TRIALS,
        "cv_folds": FOLDS,
        "random_state": SEED,
        "test_size": TEST_SIZE,
        "n_parallel_trials": 1,  # like the plain script: one trial at a time
    }
    t0 = time.perf_counter()
    task = await svc.submit(spec)
    while not (view := svc.status(task.task_id)).status.is_terminal():
        await anyio.sleep(0.005)
    elapsed = time.perf_counter() - t0
    assert view.status is TaskStatus.COMPLETED, view
    return elapsed, float(view.cv_score or 0.0)


async def main() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        csv = root / "breast_cancer.csv"
        load_breast_cancer(as_frame=True).frame.to_csv(csv, index=False)
        plain_times: list[float] = []
        queue_times: list[float] = []
        scores: dict[str, float] = {}
        async with TrainingService(root / "queue", root / "models", max_concurrent=1) as svc:
            while not svc.is_owner:
                await anyio.sleep(0.01)
            assert svc.scheduler is not None
            await anyio.to_thread.run_sync(svc.scheduler.executor.warm_up)  # the forkserver is up and loaded
            for i in range(ROUNDS):
                seconds, scores["plain"] = plain_search(csv)
                plain_times.append(seconds)
                print(f"round {i + 1}: plain optuna {seconds:.3f} s", flush=True)
                seconds, scores["queue"] = await queue_search(svc, csv)
                queue_times.append(seconds)
                print(f"round {i + 1}: through the queue {seconds:.3f} s", flush=True)
    plain, queued = statistics.median(plain_times), statistics.median(queue_times)
    ratio = queued / plain
    print(f"median plain {plain:.3f} s, median queue {queued:.3f} s, ratio {ratio:.3f} (goal <= 1.10)")
    print(f"best CV accuracy: plain {scores['plain']:.4f}, queue {scores['queue']:.4f}")
    emit(
        {
            "benchmark": "optuna_overhead",
            "n_trials": N_TRIALS,
            "plain_s": [round(t, 3) for t in plain_times],
            "queue_s": [round(t, 3) for t in queue_times],
            "median_plain_s": round(plain, 3),
            "median_queue_s": round(queued, 3),
            "ratio": round(ratio, 3),
            "best_cv_plain": round(scores["plain"], 4),
            "best_cv_queue": round(scores["queue"], 4),
        }
    )


if __name__ == "__main__":
    anyio.run(main)
