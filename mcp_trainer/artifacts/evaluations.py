"""A saved model's evaluations: what an evaluate task found when it scored the model on a data file,
kept beside the model's own report, `reports/evaluations/<task_id>/`:

    evaluation.json     the task, the data (path and sha256), the target(s), rows, metrics, and the plots
                        drawn, skipped or failed
    <plot>.png          the report plots of those rows (confusion matrix, ROC and precision-recall
                        curves; or predicted-vs-actual and residuals), named as in REPORT_PLOTS

Each evaluation folder is written whole (files.replace_dir) and never makes the model's folder again if
`delete_model` removed it meanwhile. The model's signature covers its model files only, so an evaluation
leaves it valid. Reading is light (no matplotlib): the report tool lists evaluations (reports.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mcp_trainer.artifacts.model_dir import METADATA_FILE, REPORT_PLOTS, REPORTS_DIR, model_dir
from mcp_trainer.files import replace_dir
from mcp_trainer.ids import check_task_id, is_task_id

__all__ = ["EVALUATIONS_DIR", "EVALUATION_FILE", "list_evaluations", "publish_evaluation"]

EVALUATIONS_DIR = "evaluations"
EVALUATION_FILE = "evaluation.json"
_MAX_EVALUATION_BYTES = 1 << 20


def publish_evaluation(
    models_dir: Path, model_id: str, task_id: str, images: dict[str, bytes], record: dict[str, Any]
) -> Path | None:
    """Write an evaluation of a saved model (its plots by file name, and `record` as evaluation.json);
    its folder, or None when the model is no longer there (deleted). Blocking."""
    root = model_dir(models_dir, model_id)
    folder = root / REPORTS_DIR / EVALUATIONS_DIR
    try:
        if not (root / METADATA_FILE).is_file():
            return None
        folder.mkdir(exist_ok=True)  # never its parents: a deleted model is not made again

        def fill(tmp: Path) -> None:
            for name, png in images.items():
                (tmp / name).write_bytes(png)
            (tmp / EVALUATION_FILE).write_text(json.dumps(record, indent=2, default=str), encoding="utf-8")

        final = folder / check_task_id(task_id)
        replace_dir(final, fill, make_parent=False)
    except FileNotFoundError:
        return None
    return final


def list_evaluations(models_dir: Path, model_id: str) -> list[dict[str, Any]]:
    """The evaluations of a saved model, newest first: each evaluation.json, with `plot_files` (plot name
    to PNG path, for the plots present). Unreadable ones are skipped. Blocking."""
    folder = model_dir(models_dir, model_id) / REPORTS_DIR / EVALUATIONS_DIR
    try:
        names = sorted(
            e.name for e in os.scandir(folder) if is_task_id(e.name) and e.is_dir(follow_symlinks=False)
        )
    except (FileNotFoundError, NotADirectoryError):
        return []
    found: list[dict[str, Any]] = []
    for name in names:
        entry = _read(folder / name)
        if entry is not None:
            found.append(entry)
    found.sort(key=lambda e: (e.get("created_at") or 0, e["task_id"]), reverse=True)
    return found


def _read(folder: Path) -> dict[str, Any] | None:
    path = folder / EVALUATION_FILE
    try:
        if path.is_symlink() or path.stat().st_size > _MAX_EVALUATION_BYTES:
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("task_id") != folder.name:
        return None
    plots = {
        plot: folder / f"{plot}.png"
        for plot in REPORT_PLOTS
        if (folder / f"{plot}.png").is_file() and not (folder / f"{plot}.png").is_symlink()
    }
    return {**data, "plot_files": plots}
