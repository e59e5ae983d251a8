"""A saved model's report as the report tool returns it: `reports/summary.md` and the PNG plots, capped,
and the model's evaluations (evaluations.py: an evaluate task's scores and plots, named
`<task_id>/<plot>`).

Light on purpose (the server process calls it, in a thread): it reads files and never imports matplotlib.
Paths are built only from a checked model id, plot names from the fixed list `REPORT_PLOTS` and task ids
of the evaluation folders found.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mcp_trainer.artifacts.evaluations import list_evaluations
from mcp_trainer.artifacts.model_dir import REPORT_PLOTS, REPORTS_DIR, SUMMARY_FILE, model_dir, read_metadata
from mcp_trainer.artifacts.plots_state import plots_in_flight
from mcp_trainer.errors import InvalidInputError
from mcp_trainer.views.models import Evaluation, ModelReport, ReportPlot
from mcp_trainer.views.tasks import iso

__all__ = ["MAX_REPORT_BYTES", "load_report"]

# What one answer carries at most, in PNG bytes (base64 adds a third): a handful of ~25 KB plots fit.
MAX_REPORT_BYTES = 300_000
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def load_report(
    models_dir: Path, model_id: str, plots: Sequence[str] | None = None, *, max_bytes: int = MAX_REPORT_BYTES
) -> tuple[ModelReport, dict[str, bytes]]:
    """The report of a saved model and the PNG bytes of the plots it carries, by plot name.

    `plots` names the plots wanted (`roc_curve` or `roc_curve.png`, an evaluation's
    `<task_id>/roc_curve`); None means all of them (the model's own first, then its evaluations', newest
    first), [] none.
    Plots beyond `max_bytes` in total are listed but left out (the first one wanted always comes), and
    the note says how to ask for them. Plots still being drawn (the task completed before them) are
    listed in `being_drawn`, never an error. Raises InvalidInputError for an unknown model, an unknown
    plot name, or a plot this model does not have. Blocking: call it in a thread.
    """
    meta = read_metadata(models_dir, model_id)
    reports = model_dir(models_dir, model_id) / REPORTS_DIR
    try:
        summary = (reports / SUMMARY_FILE).read_text(encoding="utf-8")
    except FileNotFoundError:
        summary = ""
    available = {
        name: reports / f"{name}.png" for name in REPORT_PLOTS if (reports / f"{name}.png").is_file()
    }
    recorded: dict[str, Any] | None = meta.get("plots") if isinstance(meta.get("plots"), dict) else None
    being_drawn, missing = plots_in_flight(recorded)
    being_drawn = [n for n in being_drawn if n not in available]
    not_drawn = {**_not_drawn(recorded), **missing}
    evaluations = list_evaluations(models_dir, model_id)
    evaluated = {
        f"{e['task_id']}/{plot}": path for e in evaluations for plot, path in e["plot_files"].items()
    }
    files = {**available, **evaluated}
    if plots is None:
        wanted = list(files)
    else:
        wanted = _wanted(model_id, plots, available, not_drawn, recorded, being_drawn)
        wanted += _wanted_evaluated(model_id, plots, evaluations, evaluated)

    images, left_out, unreadable = _read_images(wanted, files, max_bytes)

    notes: list[str] = []
    if being_drawn:
        notes.append(
            f"Still being drawn (the model is ready; its plots follow): {', '.join(being_drawn)}. "
            "Ask again in a few seconds."
        )
    if recorded is None and not available:
        notes.append(
            "This model was trained before report plots existed: its summary is all there is. "
            "Train it again to get plots."
        )
    if left_out:
        notes.append(
            f"Left out to keep this answer under {max_bytes // 1000} KB: {', '.join(left_out)}. "
            f"Ask for them with get_model_report(model_id={model_id!r}, plots={left_out!r})."
        )
    if unreadable:
        notes.append(f"Not PNG files (changed after training?): {', '.join(unreadable)}.")
    others = [n for n in files if n not in wanted]
    if plots is not None and others:
        notes.append(f"Also available: {', '.join(others)} (name them in plots, or omit plots for all).")
    report = ModelReport(
        model_id=model_id,
        summary=summary,
        plots=_entries(available, images),
        not_drawn={n: why for n, why in not_drawn.items() if n not in available},
        being_drawn=being_drawn,
        evaluations=[_evaluation(e, images) for e in evaluations],
        note=" ".join(notes) or None,
    )
    return report, images


def _read_images(
    wanted: list[str], files: dict[str, Path], max_bytes: int
) -> tuple[dict[str, bytes], list[str], list[str]]:
    """The PNG bytes of the plots wanted, in the order asked for (the first one always comes) up to
    `max_bytes`; the names left out beyond it, and those that are not PNG files."""
    images: dict[str, bytes] = {}
    left_out: list[str] = []
    unreadable: list[str] = []
    total = 0
    for name in wanted:
        data = files[name].read_bytes()
        if not data.startswith(_PNG_SIGNATURE):
            unreadable.append(name)
        elif images and total + len(data) > max_bytes:
            left_out.append(name)
        else:
            images[name] = data
            total += len(data)
    return images, left_out, unreadable


def _evaluation(entry: dict[str, Any], images: dict[str, bytes]) -> Evaluation:
    task_id = str(entry["task_id"])
    recorded = entry.get("plots") if isinstance(entry.get("plots"), dict) else None
    plots = [
        ReportPlot(
            name=f"{task_id}/{plot}",
            file=str(path),
            bytes=len(images[f"{task_id}/{plot}"]) if f"{task_id}/{plot}" in images else path.stat().st_size,
            description="on the evaluation data: " + REPORT_PLOTS[plot].removeprefix("held-out "),
            included=f"{task_id}/{plot}" in images,
        )
        for plot, path in entry["plot_files"].items()
    ]
    metrics = entry.get("metrics") if isinstance(entry.get("metrics"), dict) else {}
    return Evaluation(
        task_id=task_id,
        data_source=str(entry.get("data_source")) if entry.get("data_source") is not None else None,
        target=[str(t) for t in entry.get("target") or []],
        n_rows=entry.get("n_rows") if isinstance(entry.get("n_rows"), int) else None,
        metrics={str(k): float(v) for k, v in (metrics or {}).items() if isinstance(v, int | float)},
        created_at=iso(entry.get("created_at")) if isinstance(entry.get("created_at"), int | float) else None,
        plots=plots,
        not_drawn=_not_drawn(recorded),
    )


def _wanted_evaluated(
    model_id: str, plots: Sequence[str], evaluations: list[dict[str, Any]], evaluated: dict[str, Path]
) -> list[str]:
    """The evaluation plots among `plots` (names with a `<task_id>/` prefix); an error for one that is not
    there, naming the plots that evaluation has."""
    wanted: list[str] = []
    for requested in plots:
        name = str(requested).removesuffix(".png")
        if "/" not in name:
            continue
        if name not in evaluated:
            task_id = name.partition("/")[0]
            has = ", ".join(n for n in evaluated if n.startswith(f"{task_id}/")) or "none"
            known = any(e["task_id"] == task_id for e in evaluations)
            raise InvalidInputError(
                f"Model {model_id} has no plot {requested!r}"
                + ("." if known else f" (no evaluation by task {task_id[:40]!r})."),
                f"Its evaluation plots: {has if known else ', '.join(evaluated) or 'none'}.",
            )
        if name not in wanted:
            wanted.append(name)
    return wanted


def _entries(available: dict[str, Path], images: dict[str, bytes]) -> list[ReportPlot]:
    return [
        ReportPlot(
            name=name,
            file=str(path),
            bytes=len(images[name]) if name in images else path.stat().st_size,
            description=REPORT_PLOTS[name],
            included=name in images,
        )
        for name, path in available.items()
    ]


def _not_drawn(recorded: dict[str, Any] | None) -> dict[str, str]:
    if recorded is None:
        return {}
    skipped = recorded.get("skipped") or {}
    failed = recorded.get("failed") or {}
    return {
        **{str(k): str(v) for k, v in skipped.items()},
        **{str(k): f"failed: {v}" for k, v in failed.items()},
    }


def _wanted(
    model_id: str,
    plots: Sequence[str],
    available: dict[str, Path],
    not_drawn: dict[str, str],
    recorded: dict[str, Any] | None,
    being_drawn: list[str],
) -> list[str]:
    has = ", ".join(available) or "none"
    wanted: list[str] = []
    for requested in plots:
        name = str(requested).removesuffix(".png")
        if "/" in name:  # an evaluation's plot: _wanted_evaluated
            continue
        if name not in REPORT_PLOTS:
            raise InvalidInputError(
                f"Unknown plot {requested!r}.",
                f"Plot names are {', '.join(REPORT_PLOTS)}; model {model_id} has: {has}.",
            )
        if name in being_drawn:  # not an error: the answer lists it as being drawn
            continue
        if name not in available:
            why = not_drawn.get(name) or (
                "it was trained before report plots existed"
                if recorded is None
                else "that plot does not apply to this kind of model"
            )
            raise InvalidInputError(
                f"Model {model_id} has no {name} plot ({why}).",
                f"Its plots: {has}. Leave plots out to get all of them.",
            )
        if name not in wanted:
            wanted.append(name)
    return wanted
