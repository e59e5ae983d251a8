"""Reports of a fine-tune: the loss curve as a PNG and a readable summary."""

from __future__ import annotations

import io
import logging
from typing import Any

__all__ = ["loss_curve_png", "summary_markdown"]

log = logging.getLogger(__name__)


def loss_curve_png(
    loss_history: list[tuple[int, float]], eval_history: list[dict[str, float]]
) -> bytes | None:
    """Training loss per step (and eval loss per evaluation) as a small PNG; None if it cannot be drawn."""
    if not loss_history:
        return None
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:  # pragma: no cover - matplotlib is a core dependency
        log.warning("matplotlib is not installed; no loss curve")
        return None
    try:
        fig = Figure(figsize=(6.4, 4.0), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        steps = [s for s, _ in loss_history]
        ax.plot(steps, [v for _, v in loss_history], linewidth=1, label="training loss", color="#1f77b4")
        if eval_history:
            ax.plot(
                [e["step"] for e in eval_history],
                [e["eval_loss"] for e in eval_history],
                marker="o",
                label="eval loss",
                color="#d62728",
            )
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("loss")
        ax.set_title("Loss")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        return buf.getvalue()
    except Exception:  # a report must never fail the task
        log.exception("the loss curve could not be drawn")
        return None


def summary_markdown(meta: dict[str, Any]) -> str:
    t = meta["training"]
    lines = [
        f"# {meta['model_id']}",
        "",
        f"- Task: `{meta['task_id']}` ({meta['task_type']}, {meta['method']} fine-tune)",
        f"- Base model: `{meta['base_model']}`",
        f"- Data: `{meta['data']['source']}` "
        f"({meta['rows']['train']} train, {meta['rows']['eval']} eval examples)",
        f"- Device: {t['device']} ({t['precision']}); {t['steps']} of {t['total_steps']} steps, "
        f"{t['epochs']} epochs, effective batch {t['effective_batch']}",
        f"- Throughput: {t['samples_per_s']} samples/s, {t['tokens_per_s']} tokens/s",
        f"- Trainable parameters: {t['trainable_parameters']:,} of {t['total_parameters']:,}",
    ]
    if t["stopped_early"]:
        lines.append(f"- Stopped early: {t['stopped_early']} (best evaluated step {t['best_step']})")
    kept = meta.get("kept_weights")
    if kept:
        why = (
            "the best evaluated (ties broken by the lower eval loss)"
            if kept["policy"] == "best"
            else "the last"
        )
        lines.append(f"- Weights kept: step {kept['step']}, {why}; the metrics below are theirs")
    lines += [f"- Warning: {w}" for w in meta.get("warnings") or []]
    if t["oom_retries"]:
        lines.append(f"- Out-of-memory retries: {t['oom_retries']} (micro-batch {t['final_micro_batch']})")
    if meta["best_params"]:
        lines.append(
            f"- Searched hyperparameters: {meta['best_params']} ({meta['n_trials_completed']} trials)"
        )
    if meta["classes"]:
        lines.append(f"- Labels: {meta['classes']}")
    lines += ["", "## Metrics", ""]
    lines += [f"- {k}: {v}" for k, v in meta["metrics"].items()]
    lines += ["", "Load it with `from_pretrained` on this directory"]
    if meta["method"] == "lora":
        lines[-1] += " (a LoRA adapter: peft's AutoPeftModel* classes load it over the base model)"
    lines[-1] += "."
    return "\n".join(lines) + "\n"
