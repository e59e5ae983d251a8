"""Parallel trials: the 30-trial SVC search of bench_optuna_overhead through the queue, one trial at a time
against n_parallel_trials = the CPUs available, side by side in one run (alternating, 3 rounds each).
Wall time from submit to completed.

Goals (issue 13, restated against what the machine can do): the search phase's speed-up at least 0.95 of
the machine's own ceiling measured in the same run (below), and end to end at least 1.8x on a search whose
serial run takes 15 s or more (`--data digits --trials 40`). On a short search the work that does not
split (worker start, data load, final fit, saving) caps the end-to-end figure; that bound is printed too.

Also printed, to see where the time goes: the search phase alone (metadata timings_s.search: the trials,
without worker start, data load, final fit and saving) and the trials' summed durations (trials.csv), which
differ between the two runs because TPE proposes other parameters when it samples beside running trials.

And the machine's own ceiling, measured in the same round: the serial run's 30 trials (their parameters
from its trials.csv) cross-validated on the same folds with no queue and no Optuna, once in this process
one after another, and once split over 2 forked processes in two halves balanced by the trials' serial
durations. No scheduler can beat that split, so its speedup is what 2 cores give this work here and now:
two busy processes slow each other down on this kind of machine, and the ceiling says by how much.

`--data digits` runs the same benchmark on scikit-learn's digits (1,797 rows, 64 features, 10 classes), a
search whose trials take ~10x longer, where the fixed costs matter less; `--trials` sets the trials.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pandas as pd
from _common import UNGATED, emit, warm_up
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from mcp_trainer import TaskStatus, TrainingService
from mcp_trainer.machine import available_cpus
from mcp_trainer.trainers.tabular.cv import PreparedFolds, prepare_folds
from mcp_trainer.trainers.threads import limit_threads

N_TRIALS, ROUNDS = 30, 3
CEILING_SHARE_GOAL, LONG_SEARCH_S, LONG_SPEEDUP_GOAL = 0.95, 15.0, 1.8


def _trial_params(trials: pd.DataFrame) -> list[tuple[dict[str, Any], float]]:
    """(SVC parameters, serial duration in s) of each finished trial of a run's trials.csv."""
    out: list[tuple[dict[str, Any], float]] = []
    for _, row in trials[trials["state"] == "COMPLETE"].iterrows():
        names = [c for c in trials.columns if c.startswith("params_") and pd.notna(row[c])]
        params = {c.removeprefix("params_"): row[c] for c in names}
        if "degree" in params:
            params["degree"] = int(params["degree"])
        out.append((params, pd.to_timedelta(row["duration"]).total_seconds()))
    return out


def _fit_all(folds: PreparedFolds, params: list[dict[str, Any]]) -> None:
    for p in params:
        folds.score(partial(SVC, **p, random_state=0))


def ceiling(csv: Path, trials: pd.DataFrame, processes: int) -> tuple[float, float]:
    """(one process, `processes` processes) seconds for the same trials' cross-validations, the work split
    into halves balanced by the serial durations (longest first, each to the lighter share)."""
    frame = pd.read_csv(csv)
    X, y = frame.drop(columns="target"), frame["target"].to_numpy()
    X_train, _, y_train, _ = train_test_split(X, y, test_size=0.2, random_state=42, stratify=y)
    cv = StratifiedKFold(5, shuffle=True, random_state=42)
    folds = prepare_folds(StandardScaler(), X_train, y_train, cv, "accuracy")
    assert folds is not None
    work = sorted(_trial_params(trials), key=lambda pw: -pw[1])
    shares: list[list[dict[str, Any]]] = [[] for _ in range(processes)]
    load = [0.0] * processes
    for params, seconds in work:
        i = load.index(min(load))
        shares[i].append(params)
        load[i] += seconds
    with limit_threads(1):  # as run_parallel does: set before forking, inherited
        t0 = time.perf_counter()
        _fit_all(folds, [p for p, _ in work])
        one = time.perf_counter() - t0
        ctx = multiprocessing.get_context("fork")
        t0 = time.perf_counter()
        helpers = [ctx.Process(target=_fit_all, args=(folds, share)) for share in shares[1:]]
        for h in helpers:
            h.start()
        _fit_all(folds, shares[0])
        for h in helpers:
            h.join()
        many = time.perf_counter() - t0
    return one, many


async def timed(
    svc: TrainingService, csv: Path, workers: int, n_trials: int
) -> tuple[float, int, float, float, pd.DataFrame]:
    spec = {
        "task_type": "svm_classification",
        "data_source": str(csv),
        "target_column": "target",
        "n_trials": n_trials,
        "n_parallel_trials": workers,
    }
    t0 = time.perf_counter()
    task = await svc.submit(spec)
    while not (view := await svc.status(task.task_id)).status.is_terminal():
        await anyio.sleep(0.02)
    elapsed = time.perf_counter() - t0
    assert view.status is TaskStatus.COMPLETED, view
    record = await svc.record(task.task_id)
    assert record.result is not None and record.result.n_trials_completed is not None
    model_dir = Path(record.result.model_dir)
    search_s = float(json.loads((model_dir / "metadata.json").read_text())["timings_s"]["search"])
    trials = pd.read_csv(model_dir / "reports" / "trials.csv")
    work_s = float(pd.to_timedelta(trials["duration"]).dt.total_seconds().sum())
    return elapsed, record.result.n_trials_completed, search_s, work_s, trials


DATASETS = {"breast_cancer": load_breast_cancer, "digits": load_digits}


async def main(data: str, n_trials: int) -> None:
    cpus = available_cpus()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        csv = root / f"{data}.csv"
        DATASETS[data](as_frame=True).frame.to_csv(csv, index=False)
        print(f"data: {data}, {n_trials} trials")
        serial: list[float] = []
        parallel: list[float] = []
        trials: list[int] = []
        search: dict[int, list[float]] = {1: [], cpus: []}
        work: dict[int, list[float]] = {1: [], cpus: []}
        ceilings: list[float] = []
        async with TrainingService(
            root / "queue", root / "models", max_concurrent=1, admission=UNGATED
        ) as svc:
            await warm_up(svc)
            for i in range(ROUNDS):
                seconds, _, search_s, work_s, serial_trials = await timed(svc, csv, 1, n_trials)
                serial.append(seconds)
                search[1].append(search_s)
                work[1].append(work_s)
                seconds, n, search_s, work_s, _ = await timed(svc, csv, cpus, n_trials)
                parallel.append(seconds)
                search[cpus].append(search_s)
                work[cpus].append(work_s)
                trials.append(n)
                one, many = ceiling(csv, serial_trials, cpus)
                ceilings.append(one / many)
                print(
                    f"round {i + 1}: 1 process {serial[-1]:.3f} s (search {search[1][-1]:.3f} s, trials "
                    f"{work[1][-1]:.3f} s), {cpus} processes {parallel[-1]:.3f} s (search "
                    f"{search[cpus][-1]:.3f} s, trials {work[cpus][-1]:.3f} s, {n} trials); machine ceiling "
                    f"for the serial run's trials: {one:.3f} s in 1 process, {many:.3f} s in {cpus} = "
                    f"{ceilings[-1]:.2f}x"
                )
    speedup = statistics.median(serial) / statistics.median(parallel)
    search_speedup = statistics.median(search[1]) / statistics.median(search[cpus])
    long_search = statistics.median(serial) >= LONG_SEARCH_S
    print(
        f"speedup {speedup:.2f}x end to end with {cpus} processes"
        + (
            f" (goal >= {LONG_SPEEDUP_GOAL} on a search whose serial run takes >= {LONG_SEARCH_S:g} s: "
            f"{'met' if speedup >= LONG_SPEEDUP_GOAL else 'NOT met'})"
            if long_search
            else f" (a short search: the end-to-end goal is stated for serial runs >= {LONG_SEARCH_S:g} s)"
        )
    )
    machine = statistics.median(ceilings)
    # The serial run's time outside its search (worker start, load, final fit, plots, saving) does not
    # split over processes: with the search at the machine's ceiling, end to end could reach this at best.
    fixed = statistics.median(t - s for t, s in zip(serial, search[1], strict=True))
    bound = statistics.median(serial) / (fixed + statistics.median(search[1]) / machine)
    print(f"search phase alone: {search_speedup:.2f}x")
    print(
        f"machine ceiling for the same trial work, perfectly split, no queue, no Optuna: {machine:.2f}x; "
        f"the queue's search phase reaches {search_speedup / machine:.0%} of it (goal >= "
        f"{CEILING_SHARE_GOAL:.0%}: {'met' if search_speedup / machine >= CEILING_SHARE_GOAL else 'NOT met'}"
        f"), end to end {speedup / machine:.0%}"
    )
    print(
        f"end to end at best: {bound:.2f}x (the serial run's {fixed:.3f} s outside its search does not "
        "split; its search at the machine ceiling)"
    )
    emit(
        {
            "benchmark": "parallel_search",
            "data": data,
            "n_trials": n_trials,
            "search_share_of_ceiling": round(search_speedup / machine, 3),
            "cpus": cpus,
            "serial_s": [round(t, 3) for t in serial],
            "parallel_s": [round(t, 3) for t in parallel],
            "trials_parallel": trials,
            "speedup": round(speedup, 3),
            "search_speedup": round(search_speedup, 3),
            "machine_ceiling": [round(c, 3) for c in ceilings],
            "median_machine_ceiling": round(machine, 3),
            "serial_outside_search_s": round(fixed, 3),
            "end_to_end_bound": round(bound, 3),
            "search_s": {str(k): [round(t, 3) for t in v] for k, v in search.items()},
            "trial_work_s": {str(k): [round(t, 3) for t in v] for k, v in work.items()},
        }
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=sorted(DATASETS), default="breast_cancer")
    parser.add_argument("--trials", type=int, default=N_TRIALS, help=f"trials per search ({N_TRIALS})")
    args = parser.parse_args()
    anyio.run(main, args.data, args.trials)
