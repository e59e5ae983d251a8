"""An evaluate task: saved tabular models scored on a data file, each loaded as `predict` loads it (sha256
and signature checked before unpickling), scored with the metrics training reports (summary.py), its
report plots drawn as training draws them and kept in the model's `reports/evaluations/<task_id>/`
(artifacts/evaluations.py); then the models compared, best first, and the comparison written as CSV into
the task's output folder. Its result has no model; its metrics are the best model's."""

from __future__ import annotations

import csv
import io
import math
import time
from dataclasses import dataclass, field

import pandas as pd

from mcp_trainer.artifacts.evaluations import publish_evaluation
from mcp_trainer.files import replace_dir, sha256_of
from mcp_trainer.records import ErrorKind, TaskResult
from mcp_trainer.specs.evaluate import PRIMARY_METRICS, EvaluateSpec
from mcp_trainer.specs.sources import parse_source
from mcp_trainer.trainers.base import StopRequested, TaskFailure, Trainer, WorkerContext
from mcp_trainer.trainers.evaluate.scoring import Scored, score_model
from mcp_trainer.trainers.tabular.data import load_frame

__all__ = ["COMPARISON_FILE", "EvaluateTrainer"]

COMPARISON_FILE = "comparison.csv"


@dataclass
class _Data:
    """The evaluation data, read once for every model."""

    frame: pd.DataFrame
    source: str
    sha256: str | None
    name: str
    warned: set[str] = field(default_factory=set)


class EvaluateTrainer(Trainer):
    def run(self, ctx: WorkerContext) -> TaskResult:
        spec = ctx.record.spec
        assert isinstance(spec, EvaluateSpec) and ctx.output_dir is not None
        ctx.report(phase="loading_data", percent=2.0, force=True)
        path = parse_source(spec.data_source).path
        data = _Data(
            frame=load_frame(spec.data_source),
            source=spec.data_source,
            sha256=sha256_of(path) if path is not None else None,
            name=path.name if path is not None else spec.data_source,
        )
        scored: list[Scored] = []
        models = spec.models
        for i, model_id in enumerate(models):
            ctx.check_stop()
            if ctx.should_finish():
                if not scored:
                    raise StopRequested
                ctx.warn(
                    f"ended early by stop_training_task: {len(scored)} of {len(models)} models evaluated"
                )
                break
            ctx.report(
                phase="evaluating",
                percent=5.0 + 85.0 * i / len(models),
                message=f"model {i + 1} of {len(models)}: {model_id}",
                force=True,
            )
            one = score_model(ctx, spec, data.frame, data.name, model_id)
            _keep_evaluation(ctx, data, one)
            scored.append(one)
        ctx.report(phase="saving", percent=95.0, message=None, force=True)
        ranked = _ranked(scored)
        report_path = ctx.output_dir / COMPARISON_FILE
        replace_dir(
            ctx.output_dir, lambda folder: (folder / COMPARISON_FILE).write_text(_csv(ranked), "utf-8")
        )
        ctx.report(phase="done", percent=100.0, force=True)
        return TaskResult(
            metrics=ranked[0].metrics,
            outputs={
                "best_model_id": ranked[0].model_id,
                "primary_metric": PRIMARY_METRICS[ranked[0].kind],
                "comparison": [
                    {
                        "rank": rank,
                        "model_id": s.model_id,
                        "task_type": s.task_type,
                        "n_rows": s.n_rows,
                        "metrics": s.metrics,
                    }
                    for rank, s in enumerate(ranked, start=1)
                ],
                "report_path": str(report_path),
            },
        )


def _keep_evaluation(ctx: WorkerContext, data: _Data, one: Scored) -> None:
    """Publish one model's evaluation (metrics and plots) beside its report; say so when the model was
    deleted meanwhile, or when some rows were left out."""
    for message in one.warnings:
        if message not in data.warned:
            data.warned.add(message)
            ctx.warn(message)
    record = {
        "task_id": ctx.record.task_id,
        "model_id": one.model_id,
        "data_source": data.source,
        "data_sha256": data.sha256,
        "target": one.targets,
        "n_rows": one.n_rows,
        "metrics": one.metrics,
        "plots": one.plots.metadata(),
        "created_at": time.time(),
    }
    if publish_evaluation(ctx.models_dir, one.model_id, ctx.record.task_id, one.plots.images, record) is None:
        ctx.warn(
            f"model {one.model_id} was deleted during the evaluation: its evaluation plots were not kept"
        )


def _ranked(scored: list[Scored]) -> list[Scored]:
    """Best first by the kind's primary metric (then macro F1 for classifiers); a tie keeps the order the
    models were named in, and a metric that could not be computed (NaN) ranks last."""
    if not scored:
        raise TaskFailure(ErrorKind.INTERNAL, "no model was evaluated")

    def key(s: Scored) -> tuple[float, float]:
        names = ("accuracy", "f1_macro") if s.kind == "classification" else ("r2", "r2")
        values = [s.metrics.get(n, math.nan) for n in names]
        return tuple(-math.inf if math.isnan(v) else v for v in values)  # type: ignore[return-value]

    return sorted(scored, key=key, reverse=True)  # stable: ties keep their order


def _csv(ranked: list[Scored]) -> str:
    names = sorted({n for s in ranked for n in s.metrics})
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["rank", "model_id", "task_type", "n_rows", *names])
    for rank, s in enumerate(ranked, start=1):
        writer.writerow([rank, s.model_id, s.task_type, s.n_rows, *(s.metrics.get(n, "") for n in names)])
    return out.getvalue()
