"""The report plots of a trained scikit-learn model, each drawn as a small PNG (worker side only).

Drawn with matplotlib's object API (a `Figure` on its own Agg canvas): no pyplot, no global backend or
rcParams change, nothing shared with other code in the process. Each plot is about 640x480 pixels, RGB,
typically 15-40 KB. A plot that does not apply (too few trials, a model without scores) raises SkipPlot
with the reason.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from optuna.importance import FanovaImportanceEvaluator, get_param_importances
from optuna.trial import FrozenTrial, TrialState
from PIL import Image
from sklearn import metrics as skm

__all__ = [
    "HeldOut",
    "SkipPlot",
    "confusion_png",
    "feature_importances_png",
    "history_png",
    "param_importances_png",
    "pr_png",
    "predicted_vs_actual_png",
    "residuals_png",
    "roc_png",
]

_SIZE_IN, _DPI = (6.4, 4.8), 100  # 640 x 480 pixels
_MAX_CURVES = 8  # one-vs-rest curves drawn at most (the most frequent classes)
_MAX_PANELS = 4  # targets drawn at most by the regression plots
_MAX_POINTS = 2000  # points per scatter plot (a seeded sample of larger held-out sets)
_MAX_ANNOTATED = 15  # classes up to which the confusion matrix prints its counts
_FANOVA_TREES = 16  # optuna's default of 64 costs ~4x the time for importances that differ by a few %


class SkipPlot(Exception):
    """A plot does not apply to this model; the message says why (it goes into the summary)."""


@dataclass
class HeldOut:
    """The held-out split and what the final model made of it."""

    y_true: Any  # 1-d labels or values; 2-d (rows x targets) for several regression targets
    y_pred: Any
    targets: list[str]
    classes: list[Any] | None = None  # classification: the model's classes, the column order of `scores`
    scores: Any = None  # classification: decision_function or predict_proba output; None if neither
    score_source: str | None = None  # "decision_function" or "predict_proba"
    scope: str = "held out"  # which rows, as the plots' titles name them (an evaluation: its data file)


# -- drawing helpers -----------------------------------------------------------------------------------


def _figure(rows: int = 1, cols: int = 1) -> tuple[Figure, Any]:
    fig = Figure(figsize=_SIZE_IN, dpi=_DPI)
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=rows * cols == 1)
    return fig, axes


def _png(fig: Figure) -> bytes:
    """The figure as an RGB PNG (no alpha channel: smaller, and drawn once rather than twice by savefig)."""
    canvas: Any = fig.canvas  # FigureCanvasAgg; its draw() and buffer_rgba() carry no type hints
    canvas.draw()
    image = Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="PNG")
    return buf.getvalue()


def _label(value: Any, width: int = 14) -> str:
    text = str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def _sample(n: int) -> Any:
    """Row indices to draw: all of them, or a seeded sample of _MAX_POINTS."""
    if n <= _MAX_POINTS:
        return np.arange(n)
    return np.sort(np.random.default_rng(0).choice(n, _MAX_POINTS, replace=False))


# -- search plots ---------------------------------------------------------------------------------------


def history_png(trials: list[FrozenTrial], scoring: str, auto: bool) -> bytes:
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    if len(done) < 2:
        raise SkipPlot(f"{len(done)} completed trial(s); the history needs at least 2")
    failed = sum(t.state == TrialState.FAIL for t in trials)
    fig, ax = _figure()
    numbers = np.array([t.number for t in done])
    values = np.array([float(t.value) for t in done if t.value is not None])
    if auto:
        families = [str(t.params.get("family", "?")) for t in done]
        for i, family in enumerate(sorted(set(families))):
            mask = np.array([f == family for f in families])
            ax.scatter(numbers[mask], values[mask], s=16, color=f"C{i % 10}", label=family, zorder=3)
    else:
        ax.scatter(numbers, values, s=16, color="C0", label="trial", zorder=3)
    best = np.maximum.accumulate(values)
    ax.step(numbers, best, where="post", color="black", linewidth=1.2, label="best so far", zorder=2)
    title = f"Optimization history: {len(done)} trials"
    if failed:
        title += f" ({failed} failed, not shown)"
    ax.set_title(title, fontsize=11)
    ax.set_xlabel("trial number")
    ax.set_ylabel(f"cross-validated {scoring} (higher is better)" if scoring else "objective value")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8, ncol=2 if auto else 1)
    fig.subplots_adjust(left=0.12, right=0.97, top=0.92, bottom=0.11)
    return _png(fig)


def param_importances_png(study: optuna.Study, trials: list[FrozenTrial], auto: bool, seed: int) -> bytes:
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    params: list[str] | None = None
    scope = f"{len(done)} trials"
    if auto and done:
        best = max(done, key=lambda t: float(t.value) if t.value is not None else -math.inf)
        family = str(best.params.get("family"))
        done = [t for t in done if t.params.get("family") == family]
        # Each family has its own parameters: compare those of the best family, over its trials.
        params = sorted(set.intersection(*(set(t.params) for t in done)) - {"family"})
        scope = f"the {len(done)} {family} trials"
    if len(done) < 2:
        raise SkipPlot(f"{len(done)} completed trial(s) to compare; importances need at least 2")
    varying = _varying_params(done, params)
    if len(varying) < 2:
        only = f" ({varying[0]})" if varying else ""
        raise SkipPlot(f"{len(varying)} searched parameter(s) varied{only}; importances compare at least 2")
    if len({float(t.value) for t in done if t.value is not None}) < 2:
        raise SkipPlot("every trial scored the same, so no parameter made a difference")
    evaluator = FanovaImportanceEvaluator(n_trees=_FANOVA_TREES, seed=seed)
    importances = get_param_importances(study, evaluator=evaluator, params=varying)
    names = list(importances)[::-1]  # most important at the top
    fig, ax = _figure()
    y = np.arange(len(names))
    ax.barh(y, [float(importances[n]) for n in names], height=0.6, color="C0")
    ax.set_yticks(y, [_label(n.split(".", 1)[-1] if auto else n, 22) for n in names])
    ax.set_xlim(0, 1)
    fig.suptitle(f"Hyperparameter importances (fANOVA over {scope})", fontsize=11)
    ax.set_xlabel("share of the objective's variance explained")
    ax.set_ylabel("hyperparameter")
    ax.grid(axis="x", alpha=0.3)
    fig.subplots_adjust(left=0.3, right=0.97, top=0.9, bottom=0.11)
    return _png(fig)


def feature_importances_png(permutation: dict[str, Any]) -> bytes:
    """The 20 input columns whose shuffling costs the held-out score most, with the spread of repeats."""
    if "skipped" in permutation:
        raise SkipPlot(f"permutation importance was not computed: {permutation['skipped']}")
    names = list(permutation["mean"])[:20][::-1]  # the most important at the top
    fig, ax = _figure()
    y = np.arange(len(names))
    means = [float(permutation["mean"][n]) for n in names]
    spread = [float(permutation["std"][n]) for n in names]
    ax.barh(y, means, xerr=spread, height=0.6, color="C0", ecolor="0.4", capsize=2)
    ax.set_yticks(y, [_label(n, 22) for n in names])
    ax.axvline(0.0, color="0.3", linewidth=0.8)
    total = len(permutation["mean"])
    shown = f"the top 20 of {total} columns" if total > 20 else f"{total} columns"
    fig.suptitle(f"Feature importances: permutation on the held-out split ({shown})", fontsize=11)
    ax.set_xlabel(
        f"drop in {permutation['scoring']} when the column is shuffled ({permutation['repeats']} repeats)"
    )
    ax.grid(axis="x", alpha=0.3)
    fig.subplots_adjust(left=0.3, right=0.97, top=0.9, bottom=0.12)
    return _png(fig)


def _varying_params(trials: list[FrozenTrial], params: list[str] | None) -> list[str]:
    """Parameters present in every trial (or the given ones) that took more than one value."""
    names = params if params is not None else sorted(set.intersection(*(set(t.params) for t in trials)))
    return [n for n in names if len({repr(t.params.get(n)) for t in trials}) > 1]


# -- classification plots ----------------------------------------------------------------------------------


def confusion_png(h: HeldOut) -> bytes:
    classes = list(h.classes or [])
    matrix = skm.confusion_matrix(h.y_true, h.y_pred, labels=classes)
    k = len(classes)
    fig, ax = _figure()
    ax.imshow(matrix, cmap="Blues", interpolation="nearest", aspect="auto")
    if k <= _MAX_ANNOTATED:
        threshold = matrix.max() / 2 if matrix.size else 0
        for (i, j), count in np.ndenumerate(matrix):
            ax.text(
                j,
                i,
                str(count),
                ha="center",
                va="center",
                fontsize=11 if k <= 4 else 9 if k <= 8 else 7,
                color="white" if count > threshold else "black",
            )
    ticks = np.arange(k)
    labels = [_label(c) for c in classes]
    longest = max((len(s) for s in labels), default=1) if k <= 30 else 1
    crowded = k * longest > 40  # horizontal labels would run into each other
    if k <= 30:
        ax.set_xticks(ticks, labels, rotation=45 if crowded else 0, ha="right" if crowded else "center")
        ax.set_yticks(ticks, labels)
    accuracy = float(np.trace(matrix)) / max(int(matrix.sum()), 1)
    ax.set_title(
        f"Confusion matrix ({h.scope}, {int(matrix.sum())} rows, accuracy {accuracy:.3f})", fontsize=11
    )
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    margin = min(0.12 + 0.012 * longest, 0.3)
    bottom = margin if crowded else 0.12
    fig.subplots_adjust(left=margin, right=0.97, top=0.92, bottom=bottom)
    return _png(fig)


def _one_vs_rest(h: HeldOut) -> list[tuple[str, Any, Any]]:
    """(label, is-positive, score) per curve: one for two classes, else the most frequent classes."""
    if h.scores is None:
        raise SkipPlot("the model gives no class scores (neither decision_function nor predict_proba)")
    classes = list(h.classes or [])
    y = np.asarray(h.y_true)
    scores = np.asarray(h.scores, dtype=float)
    if len(classes) == 2:
        positive = classes[1]
        truth = y == positive
        if truth.all() or not truth.any():
            raise SkipPlot("the held-out rows hold one class only")
        return [(f"{_label(positive)} vs {_label(classes[0])}", truth, scores)]
    if scores.ndim != 2 or scores.shape[1] != len(classes):
        raise SkipPlot(f"the model's scores have shape {scores.shape}, not one column per class")
    counts = [(int(np.sum(y == c)), i) for i, c in enumerate(classes)]
    present = [(n, i) for n, i in counts if 0 < n < len(y)]
    if not present:
        raise SkipPlot("no class has both positive and negative held-out rows")
    chosen = sorted(sorted(present, key=lambda c: -c[0])[:_MAX_CURVES], key=lambda c: c[1])
    return [(_label(classes[i]), y == classes[i], scores[:, i]) for _, i in chosen]


def _curve_title(kind: str, h: HeldOut, n_curves: int) -> str:
    k = len(h.classes or [])
    scope = "" if k == 2 else f", one vs rest, {n_curves} of {k} classes"
    return f"{kind} curve ({h.scope}{scope}; {h.score_source})"


def roc_png(h: HeldOut) -> bytes:
    curves = _one_vs_rest(h)
    fig, ax = _figure()
    for i, (label, truth, score) in enumerate(curves):
        fpr, tpr, _ = skm.roc_curve(truth, score)
        auc = skm.auc(fpr, tpr)
        ax.plot(fpr, tpr, color=f"C{i % 10}", linewidth=1.4, label=f"{label} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=0.8, label="chance")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title(_curve_title("ROC", h, len(curves)), fontsize=11)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.subplots_adjust(left=0.11, right=0.97, top=0.92, bottom=0.11)
    return _png(fig)


def pr_png(h: HeldOut) -> bytes:
    curves = _one_vs_rest(h)
    fig, ax = _figure()
    for i, (label, truth, score) in enumerate(curves):
        precision, recall, _ = skm.precision_recall_curve(truth, score)
        ap = skm.average_precision_score(truth, score)
        ax.step(
            recall, precision, where="post", color=f"C{i % 10}", linewidth=1.4, label=f"{label} (AP {ap:.3f})"
        )
    if len(curves) == 1:
        prevalence = float(np.mean(curves[0][1]))
        ax.axhline(
            prevalence, color="grey", linestyle="--", linewidth=0.8, label=f"chance ({prevalence:.2f})"
        )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title(_curve_title("Precision-recall", h, len(curves)), fontsize=11)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    fig.subplots_adjust(left=0.11, right=0.97, top=0.92, bottom=0.11)
    return _png(fig)


# -- regression plots ------------------------------------------------------------------------------------


def _panels(h: HeldOut) -> tuple[Figure, list[tuple[Axes, str, Any, Any]], str]:
    """A figure with one panel per target (the first few), each with its (true, predicted) columns."""
    y_true = np.asarray(h.y_true, dtype=float).reshape(len(h.y_true), -1)
    y_pred = np.asarray(h.y_pred, dtype=float).reshape(len(h.y_pred), -1)
    n = min(y_true.shape[1], _MAX_PANELS)
    rows, cols = (1, n) if n <= 2 else (2, 2)
    fig, axes = _figure(rows, cols)
    flat = [axes] if n == 1 else list(np.ravel(axes))
    for extra in flat[n:]:
        extra.set_visible(False)
    rows_drawn = _sample(len(y_true))
    note = "" if len(rows_drawn) == len(y_true) else f", {len(rows_drawn)} of {len(y_true)} rows drawn"
    if y_true.shape[1] > n:
        note += f", first {n} of {y_true.shape[1]} targets"
    panels = [(flat[i], h.targets[i], y_true[rows_drawn, i], y_pred[rows_drawn, i]) for i in range(n)]
    fig.subplots_adjust(
        left=0.12 if n == 1 else 0.09, right=0.97, top=0.88, bottom=0.1, wspace=0.3, hspace=0.45
    )
    return fig, panels, note


def _titles(
    fig: Figure, panels: list[tuple[Axes, str, Any, Any]], heading: str, per_panel: list[str]
) -> None:
    if len(panels) == 1:
        panels[0][0].set_title(f"{heading}\n{per_panel[0]}", fontsize=11)
        return
    fig.suptitle(heading, fontsize=11)
    for (ax, *_), title in zip(panels, per_panel, strict=True):
        ax.set_title(title, fontsize=9)


def predicted_vs_actual_png(h: HeldOut) -> bytes:
    fig, panels, note = _panels(h)
    small = len(panels) > 1
    titles: list[str] = []
    for ax, target, truth, pred in panels:
        ax.scatter(truth, pred, s=8 if small else 12, alpha=0.6, color="C0", linewidths=0)
        low, high = float(min(truth.min(), pred.min())), float(max(truth.max(), pred.max()))
        ax.plot([low, high], [low, high], color="grey", linestyle="--", linewidth=0.8)
        r2 = skm.r2_score(truth, pred) if len(truth) > 1 else float("nan")
        titles.append(f"{_label(target, 24)} (R² {r2:.3f})")
        ax.set_xlabel("actual", fontsize=8 if small else 10)
        ax.set_ylabel("predicted", fontsize=8 if small else 10)
        ax.tick_params(labelsize=7 if small else 9)
        ax.grid(alpha=0.3)
    _titles(fig, panels, f"Predicted vs actual ({h.scope}{note})", titles)
    return _png(fig)


def residuals_png(h: HeldOut) -> bytes:
    fig, panels, note = _panels(h)
    small = len(panels) > 1
    titles: list[str] = []
    for ax, target, truth, pred in panels:
        residual = truth - pred
        ax.scatter(pred, residual, s=8 if small else 12, alpha=0.6, color="C0", linewidths=0)
        ax.axhline(0.0, color="grey", linestyle="--", linewidth=0.8)
        rmse = float(np.sqrt(np.mean(residual**2))) if len(residual) else float("nan")
        titles.append(f"{_label(target, 24)} (RMSE {rmse:.3g})")
        ax.set_xlabel("predicted", fontsize=8 if small else 10)
        ax.set_ylabel("actual - predicted", fontsize=8 if small else 10)
        ax.tick_params(labelsize=7 if small else 9)
        ax.grid(alpha=0.3)
    _titles(fig, panels, f"Residuals ({h.scope}{note})", titles)
    return _png(fig)
