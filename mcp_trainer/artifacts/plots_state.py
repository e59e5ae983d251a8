"""Report plots drawn after their model is saved: the `plots` entry of `metadata.json` while they are
drawn, publishing them when they are, and how a reader tells plots still being drawn from plots that never
will be.

A task completes as soon as its model and metadata are saved (predict works from then on); its worker
draws the plots afterwards. Meanwhile `plots` says `{"state": "drawing", "pending": [...], "pid": ...,
"pid_started_at": ...}`. When they are drawn the worker writes each PNG into `reports/` (temporary file
and rename), then `summary.md`, then `metadata.json` with `{"state": "drawn", ...}`, each atomically. The
signature (signing.py) covers the model file(s) only, so rewriting the metadata leaves it valid.

A worker that dies in between (killed, the machine restarted) leaves "drawing": its owner marks the
pending plots missing when it sees the worker exit, and a reader that finds no live drawer says they are
missing all the same, so a crash at any point, or a restart, never leaves a report waiting forever.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import psutil

from mcp_trainer.artifacts.model_dir import METADATA_FILE, REPORTS_DIR, SUMMARY_FILE, model_dir
from mcp_trainer.files import atomic_write_bytes

__all__ = [
    "DRAWING",
    "drawing_entry",
    "mark_plots_missing",
    "plots_in_flight",
    "publish_plots",
    "settled_importances",
]

DRAWING = "drawing"
_SAME_PROCESS_S = 0.5  # a pid whose start time differs by more than this is another process


def drawing_entry(pending: list[str], skipped: dict[str, str]) -> dict[str, Any]:
    """The `plots` entry of a model saved before its plots: those being drawn by this process, and those
    that do not apply."""
    try:
        started_at: float | None = psutil.Process().create_time()
    except psutil.Error:  # pragma: no cover - /proc unreadable
        started_at = None
    return {
        "state": DRAWING,
        "pending": list(pending),
        "files": [],
        "bytes": {},
        "skipped": dict(skipped),
        "failed": {},
        "pid": os.getpid(),
        "pid_started_at": started_at,
    }


def publish_plots(
    models_dir: Path,
    model_id: str,
    images: dict[str, bytes],
    plots: dict[str, Any],
    summary: str,
    updates: dict[str, Any] | None = None,
) -> bool:
    """Write the drawn plots into the saved model's `reports/`, then its summary, then its metadata with
    `plots` (state "drawn"), the drawing time in `timings_s.reports` and `updates` (what was computed
    with the plots, e.g. permutation importances), each file atomically. False when the model is no
    longer there (deleted, or its task was cancelled as it saved it). Blocking."""
    root = model_dir(models_dir, model_id)
    try:
        meta = json.loads((root / METADATA_FILE).read_text(encoding="utf-8"))
        for name, png in images.items():
            atomic_write_bytes(root / REPORTS_DIR / name, png)
        atomic_write_bytes(root / REPORTS_DIR / SUMMARY_FILE, summary.encode("utf-8"))
    except FileNotFoundError:
        return False
    meta.update(updates or {})
    meta["plots"] = {**plots, "state": "drawn"}
    meta["timings_s"] = {**(meta.get("timings_s") or {}), "reports": plots.get("seconds", 0.0)}
    return _write_metadata(root, meta)


def mark_plots_missing(models_dir: Path, model_id: str, reason: str) -> bool:
    """Record the plots still pending in a saved model as missing, with `reason`, when the process that
    drew them ended before it finished. False when there is nothing to mark (drawn, or no such model).
    Blocking."""
    root = model_dir(models_dir, model_id)
    try:
        meta = json.loads((root / METADATA_FILE).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return False
    plots = meta.get("plots")
    if not isinstance(plots, dict) or plots.get("state") != DRAWING:
        return False
    missing = {str(name): reason for name in plots.get("pending") or []}
    meta["plots"] = {**plots, "state": "incomplete", "pending": [], "missing": missing}
    meta["feature_importances"] = settled_importances(meta.get("feature_importances"), reason)
    return _write_metadata(root, meta)


def settled_importances(importances: Any, reason: str) -> Any:
    """A model's `feature_importances` with permutation importances still pending (computed with the
    plots, after the model was saved) marked skipped for `reason`, when their computer is gone."""
    if not isinstance(importances, dict):
        return importances
    permutation = importances.get("permutation")
    if isinstance(permutation, dict) and "pending" in permutation:
        return {**importances, "permutation": {"skipped": reason}}
    return importances


def plots_in_flight(plots: object) -> tuple[list[str], dict[str, str]]:
    """From a model's `plots` entry: the plots still being drawn, and those that will not be (missing,
    with the reason). A "drawing" entry whose drawer is no longer alive has its pending plots missing."""
    if not isinstance(plots, dict):
        return [], {}
    missing = {str(k): str(v) for k, v in (plots.get("missing") or {}).items()}
    pending = [str(n) for n in plots.get("pending") or []]
    if plots.get("state") != DRAWING or not pending:
        return [], missing
    if _drawer_alive(plots.get("pid"), plots.get("pid_started_at")):
        return pending, missing
    why = f"the process drawing it (pid {plots.get('pid')}) ended before it finished; train again to get it"
    return [], {**missing, **{name: why for name in pending}}


def _drawer_alive(pid: object, started_at: object) -> bool:
    if not isinstance(pid, int) or not isinstance(started_at, (int, float)):
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return abs(proc.create_time() - started_at) < _SAME_PROCESS_S
    except psutil.Error:
        return False


def _write_metadata(root: Path, meta: dict[str, Any]) -> bool:
    data = json.dumps(meta, indent=2, default=str).encode("utf-8")
    with contextlib.suppress(FileNotFoundError):
        atomic_write_bytes(root / METADATA_FILE, data)
        return True
    return False
