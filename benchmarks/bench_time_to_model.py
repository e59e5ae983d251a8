"""Time from the end of a search to a usable model: how long after its search ends a task is `completed`
and `predict` answers.

What it measures, in each of ROUNDS rounds: one small search (svm_classification on scikit-learn's
breast_cancer, N_TRIALS trials, 3 folds, one trial at a time) through a warmed-up TrainingService. The
benchmark polls `status` every 2 ms (the owner's live progress) and notes when the task leaves its search
(the first phase after "searching": "training", the final fit; a task still queued when first polled
is not past its search), when it is `completed`, and when a `predict` of 5 rows, called at once,
returns. Figures: the medians of search end -> completed, and of
search end -> predict answered (which includes the ~0.1-0.3 s of a prediction job's own process), and the
worker's own final fit, evaluation (held-out predictions and metrics; permutation importances now come
after the result, with the plots) and report-plot times from the model's metadata (read once the plots
are drawn).
Goal (issue 13): search end -> completed <= 0.2 s; the plots may follow.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
from _common import UNGATED, emit, warm_up

from mcp_trainer import TaskStatus, TrainingService
from mcp_trainer.artifacts.model_dir import read_metadata

N_TRIALS, ROUNDS = 10, 5
SEARCHING = ("queued", "starting", "loading_data", "searching")  # before the search ends


async def one_round(svc: TrainingService) -> dict[str, Any]:
    spec = {
        "task_type": "svm_classification",
        "data_source": "sklearn:breast_cancer",
        "target_column": "target",
        "n_trials": N_TRIALS,
        "cv_folds": 3,
        "n_parallel_trials": 1,
    }
    task_id = (await svc.submit(spec)).task_id
    search_end: float | None = None
    while not (view := await svc.status(task_id)).status.is_terminal():
        if search_end is None and view.phase not in SEARCHING:
            search_end = time.perf_counter()
        await anyio.sleep(0.002)
    completed = time.perf_counter()
    assert view.status is TaskStatus.COMPLETED and view.model_id is not None, view
    assert search_end is not None, "the search's end was not seen"
    columns = read_metadata(svc.models_dir, view.model_id)["features"]["names"]
    await svc.predict(view.model_id, rows=[dict.fromkeys(columns, 0.0)] * 5)
    predicted = time.perf_counter()
    await svc.drain(timeout_s=60)
    while (meta := read_metadata(svc.models_dir, view.model_id))["plots"].get("state") == "drawing":
        await anyio.sleep(0.05)
    t = meta["timings_s"]
    return {
        "to_completed_s": completed - search_end,
        "to_predict_s": predicted - search_end,
        "final_fit_s": float(meta["timings_s"]["final_fit"]),
        # held-out predictions and metrics, between the final fit and the save
        "evaluate_s": float(t["total"] - t["load"] - t["search"] - t["final_fit"]),
        "reports_s": float(meta["timings_s"].get("reports", 0.0)),
    }


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        async with TrainingService(
            root / "queue", root / "models", max_concurrent=1, admission=UNGATED
        ) as svc:
            await warm_up(svc)
            runs = []
            for i in range(ROUNDS):
                runs.append(await one_round(svc))
                r = runs[-1]
                print(
                    f"round {i + 1}: search end -> completed {r['to_completed_s']:.3f} s, "
                    f"-> predict answered {r['to_predict_s']:.3f} s "
                    f"(final fit {r['final_fit_s']:.3f} s, evaluation {r['evaluate_s']:.3f} s, "
                    f"plots {r['reports_s']:.3f} s)",
                    flush=True,
                )
                await anyio.sleep(1.0)  # let the previous worker's plots finish before the next round
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print(
        f"median search end -> completed {med['to_completed_s']:.3f} s (goal <= 0.2 s), "
        f"-> predict answered {med['to_predict_s']:.3f} s, report plots {med['reports_s']:.3f} s"
    )
    emit(
        {
            "benchmark": "time_to_model",
            "rounds": ROUNDS,
            "to_completed_s": [round(r["to_completed_s"], 3) for r in runs],
            "median_to_completed_s": round(med["to_completed_s"], 3),
            "median_to_predict_s": round(med["to_predict_s"], 3),
            "median_final_fit_s": round(med["final_fit_s"], 3),
            "median_evaluate_s": round(med["evaluate_s"], 3),
            "median_reports_s": round(med["reports_s"], 3),
            "goal_met": med["to_completed_s"] <= 0.2,
        }
    )


if __name__ == "__main__":
    anyio.run(main)
