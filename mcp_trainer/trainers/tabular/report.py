"""The report of a trained scikit-learn model: which plots apply, drawn shared out between processes
(worker side only); the drawing itself is in plots.py.

A plot that does not apply (too few trials, a model without scores) is skipped with the reason; a plot
that fails is logged and recorded, and never fails the task.

matplotlib spends ~50-100 ms of Python per figure here whatever is on it, so the plots are shared out
between the worker and forked helper processes (one per CPU, at most 4): the same fork-from-the-worker
pattern as parallel trials, and a crash inside matplotlib ends a helper, not the task.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna

from mcp_trainer.artifacts.model_dir import REPORT_PLOTS
from mcp_trainer.machine import available_cpus
from mcp_trainer.trainers.tabular import plots
from mcp_trainer.trainers.tabular.plots import HeldOut, SkipPlot

__all__ = [
    "HeldOut",
    "RenderedReports",
    "ReportPlan",
    "SkipPlot",
    "class_scores",
    "draw_reports",
    "plan_reports",
    "render_reports",
]

log = logging.getLogger(__name__)

_MAX_PROCESSES = 4
_HELPER_TIMEOUT_S = 120.0  # a helper still drawing after this is ended and its plots recorded as failed

Job = tuple[str, Callable[[], bytes]]
Outcome = tuple[str, str, Any]  # (plot name, "png" | "skipped" | "failed", bytes or the reason)


@dataclass
class RenderedReports:
    """PNG files by file name, plus why each missing plot is missing."""

    images: dict[str, bytes] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # plot name -> why it does not apply
    failed: dict[str, str] = field(default_factory=dict)  # plot name -> the error that stopped it
    seconds: float = 0.0

    def metadata(self) -> dict[str, Any]:
        return {
            "files": list(self.images),
            "bytes": {name: len(png) for name, png in self.images.items()},
            "skipped": self.skipped,
            "failed": self.failed,
            "seconds": round(self.seconds, 3),
        }

    def summary_lines(self) -> list[str]:
        """The summary.md section that lists the plots."""
        lines = ["## Report plots", ""]
        for name, png in self.images.items():
            what = REPORT_PLOTS.get(name.removesuffix(".png"), "")
            lines.append(f"- `{name}` ({len(png) // 1024 + 1} KB): {what}")
        if not self.images:
            lines.append("- none")
        lines += [f"- not drawn: {name}: {why}" for name, why in self.skipped.items()]
        lines += [f"- failed: {name}: {why} (see the task log)" for name, why in self.failed.items()]
        return lines


def class_scores(model: Any, X: Any) -> tuple[Any, str | None]:
    """The model's scores for each class, for ROC and PR curves: decision_function, else predict_proba.

    Binary problems give one score per row (for the second class, as scikit-learn's metrics expect);
    (None, None) when the model offers neither, or neither works (that only costs plots and roc_auc)."""
    for method in ("decision_function", "predict_proba"):
        if not hasattr(model, method):
            continue
        try:
            scores = np.asarray(getattr(model, method)(X))
        except AttributeError:  # a pipeline exposes both even when its final model lacks one
            continue
        except Exception as exc:
            log.warning("the model's %s failed: %s: %s", method, type(exc).__name__, exc)
            continue
        if scores.ndim == 2 and scores.shape[1] == 2:
            scores = scores[:, 1]
        return scores, method
    return None, None


@dataclass
class ReportPlan:
    """The plots that apply to a model, to be drawn, and those that do not, with the reason."""

    jobs: list[Job] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.jobs]


def plan_reports(
    *,
    held_out: HeldOut,
    classification: bool,
    study: optuna.Study | None = None,
    scoring: str = "",
    auto: bool = False,
    seed: int = 0,
    importance: dict[str, Any] | None = None,
) -> ReportPlan:
    """Which plots apply (cheap: nothing is drawn)."""
    plan = ReportPlan()
    jobs = plan.jobs
    if study is None:
        plan.skipped["optimization_history"] = "no hyperparameter search was run"
        plan.skipped["param_importances"] = "no hyperparameter search was run"
    else:
        trials = study.get_trials(deepcopy=False)
        jobs.append(("optimization_history", lambda: plots.history_png(trials, scoring, auto)))
        jobs.append(("param_importances", lambda: plots.param_importances_png(study, trials, auto, seed)))
    if classification:
        jobs += [
            ("confusion_matrix", lambda: plots.confusion_png(held_out)),
            ("roc_curve", lambda: plots.roc_png(held_out)),
            ("pr_curve", lambda: plots.pr_png(held_out)),
        ]
    else:
        jobs += [
            ("predicted_vs_actual", lambda: plots.predicted_vs_actual_png(held_out)),
            ("residuals", lambda: plots.residuals_png(held_out)),
        ]
    if importance is not None:
        jobs.append(("feature_importances", lambda: plots.feature_importances_png(importance)))
    return plan


def render_reports(*, processes: int | None = None, **what: Any) -> RenderedReports:
    """Every plot that applies (`plan_reports`'s arguments), drawn; see `draw_reports`."""
    return draw_reports(plan_reports(**what), processes)


def draw_reports(plan: ReportPlan, processes: int | None = None) -> RenderedReports:
    """Every plot of `plan` as PNG bytes named `<plot>.png`, drawn by up to `processes` processes
    (default: one per CPU, at most 4). Never raises for a plot: a failure is logged as a warning and
    recorded in `failed`."""
    started = time.perf_counter()
    out = RenderedReports(skipped=dict(plan.skipped))
    jobs = plan.jobs
    n = max(1, min(processes or min(available_cpus(), _MAX_PROCESSES), len(jobs)))
    try:
        outcomes = {name: (kind, value) for name, kind, value in _draw_shared(jobs, n)}
    except Exception as exc:  # the sharing itself broke: still never fail the task
        log.warning("the report plots could not be drawn: %s: %s", type(exc).__name__, exc, exc_info=True)
        outcomes = {name: ("failed", f"{type(exc).__name__}: {exc}") for name, _ in jobs}
    for name, _ in jobs:  # the report's order, whichever process drew what
        kind, value = outcomes[name]
        if kind == "png":
            out.images[f"{name}.png"] = value
        elif kind == "skipped":
            out.skipped[name] = value
        else:
            out.failed[name] = value
    out.seconds = time.perf_counter() - started
    return out


# -- sharing the plots between processes -----------------------------------------------------------------


def _draw(jobs: Sequence[Job]) -> list[Outcome]:
    outcomes: list[Outcome] = []
    for name, draw in jobs:
        started = time.perf_counter()
        try:
            outcomes.append((name, "png", draw()))
            log.info("drew %s in %.3f s", name, time.perf_counter() - started)
        except SkipPlot as why:
            outcomes.append((name, "skipped", str(why)))
        except Exception as exc:  # a report must never fail the training task
            log.warning(
                "the %s plot could not be drawn: %s: %s", name, type(exc).__name__, exc, exc_info=True
            )
            outcomes.append((name, "failed", f"{type(exc).__name__}: {exc}"))
    return outcomes


def _helper(jobs: Sequence[Job], conn: Any) -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG: die with the worker
    try:
        conn.send(_draw(jobs))
    finally:
        conn.close()


def _draw_shared(jobs: Sequence[Job], processes: int) -> list[Outcome]:
    """Draw `jobs` round-robin over this process and `processes - 1` forked helpers."""
    shares = [list(jobs[i::processes]) for i in range(processes)]
    # fork: helpers inherit the data, the study and the loaded matplotlib; nothing is pickled but PNGs.
    ctx = multiprocessing.get_context("fork")
    helpers: list[tuple[list[Job], Any, Any]] = []
    for share in shares[1:]:
        parent, child = ctx.Pipe(duplex=False)
        try:
            process = ctx.Process(target=_helper, args=(share, child), daemon=True)
            process.start()
        except Exception as exc:  # no process to be had (OSError, or a daemonic parent): draw it here
            log.warning("drawing the report plots in one process: %s", exc)
            parent.close()
            shares[0] += share
            continue
        finally:
            child.close()
        helpers.append((share, process, parent))
    outcomes = _draw(shares[0])
    for share, process, conn in helpers:
        outcomes += _collect(share, process, conn)
    return outcomes


def _collect(share: list[Job], process: Any, conn: Any) -> list[Outcome]:
    try:
        if conn.poll(_HELPER_TIMEOUT_S):
            outcomes: list[Outcome] = conn.recv()
            return outcomes
        why = f"its drawing process was still busy after {_HELPER_TIMEOUT_S:g} s"
    except (EOFError, OSError):
        process.join(5)
        why = f"its drawing process ended without a result (exit code {process.exitcode})"
    finally:
        if process.is_alive():
            process.kill()
        process.join()
        conn.close()
    log.warning("report plots %s not drawn: %s", [name for name, _ in share], why)
    return [(name, "failed", why) for name, _ in share]
