"""A preprocess task: read a data file whole, apply the operations in their fixed order (ops.py), and
write the result into the task's output folder (`queue/datasets/<task_id>/`, put in place whole) with a
`manifest.json` that says what was done. Its result has no model; its outputs name the files."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pandas as pd

from mcp_trainer.files import replace_dir, sha256_of
from mcp_trainer.records import ErrorKind, TaskResult
from mcp_trainer.specs.preprocess import OPERATIONS, PreprocessSpec
from mcp_trainer.specs.sources import parse_source
from mcp_trainer.trainers.base import TaskFailure, Trainer, WorkerContext
from mcp_trainer.trainers.preprocess import ops
from mcp_trainer.trainers.tabular.data import load_frame

__all__ = ["MAX_LISTED_COLUMNS", "PreprocessTrainer"]

MAX_LISTED_COLUMNS = 500  # the outputs name at most this many columns (a task record stays small)
MANIFEST = "manifest.json"


class PreprocessTrainer(Trainer):
    def run(self, ctx: WorkerContext) -> TaskResult:
        spec = ctx.record.spec
        assert isinstance(spec, PreprocessSpec) and ctx.output_dir is not None
        ctx.report(phase="loading_data", percent=2.0, force=True)
        frame = load_frame(spec.data_source)
        _check_columns(frame, spec)
        manifest: dict[str, Any] = {
            "task_id": ctx.record.task_id,
            "source": spec.data_source,
            "source_sha256": _sha256(spec.data_source),
            "rows_read": len(frame),
            "operations": {},
        }
        parts = _apply(ctx, spec, frame, manifest)
        ctx.check_stop()
        ctx.report(phase="saving", percent=90.0, force=True)
        names = _file_names(spec, len(parts))
        outputs = _outputs(ctx.output_dir, names, parts)
        manifest.update(
            rows_written=outputs["n_rows"], columns=list(parts[0].columns), created_at=time.time()
        )
        replace_dir(ctx.output_dir, lambda folder: _write(folder, names, parts, spec, manifest))
        ctx.report(phase="done", percent=100.0, force=True)
        return TaskResult(outputs=outputs)


def _apply(
    ctx: WorkerContext, spec: PreprocessSpec, frame: pd.DataFrame, manifest: dict[str, Any]
) -> list[pd.DataFrame]:
    """The operations the spec asks for, in their order: the result, or its training and test parts."""
    done = manifest["operations"]
    asked = spec.operations
    for i, op in enumerate(asked):
        ctx.check_stop()
        ctx.report(phase=op, percent=5.0 + 80.0 * i / len(asked), force=True)
        if op == "drop_columns":
            frame = frame.drop(columns=spec.drop_columns)
            done[op] = list(spec.drop_columns)
        elif op == "filter":
            frame, done[op] = ops.apply_filter(frame, spec.filter)
            if frame.empty:
                raise TaskFailure(
                    ErrorKind.DATA_ERROR,
                    f"filter left no rows (of {manifest['rows_read']}): {_removed(done[op])}.",
                    "Loosen the conditions; every condition must hold for a row to stay.",
                )
        elif op == "impute":
            frame, done[op] = ops.impute(frame, spec, ctx.warn)
        elif op == "encode":
            frame, done[op] = ops.encode(frame, spec)
        elif op == "sample":
            frame, done[op] = ops.sample(frame, spec, ctx.warn)
        elif op == "split":
            train, test, done[op] = ops.split(frame, spec, ctx.warn)
            return [train, test]
    return [frame]


def _removed(notes: list[dict[str, Any]]) -> str:
    return ", ".join(f"{n['condition']} removed {n['rows_removed']}" for n in notes)


def _check_columns(frame: pd.DataFrame, spec: PreprocessSpec) -> None:
    """The columns the spec names exist (checked at submit for files; a bundled dataset is loaded here)."""
    named = [
        *([spec.target_column] if spec.target_column else []),
        *spec.drop_columns,
        *(c.column for c in spec.filter),
        *(spec.encode_columns or []),
    ]
    missing = sorted({c for c in named if c not in frame.columns})
    if missing:
        raise TaskFailure(
            ErrorKind.DATA_ERROR,
            f"Columns {missing} are not in {spec.data_source}.",
            f"Its columns are {list(frame.columns)[:50]}.",
        )


def _file_names(spec: PreprocessSpec, parts: int) -> list[str]:
    suffix = ".parquet" if spec.output_format == "parquet" else ".csv"
    return [f"train{suffix}", f"test{suffix}"] if parts == 2 else [f"data{suffix}"]


def _outputs(folder: Path, names: list[str], parts: list[pd.DataFrame]) -> dict[str, Any]:
    """The task's named outputs (see PreprocessSpec), with the paths the files will have once in place."""
    columns = [str(c) for c in parts[0].columns]
    outputs: dict[str, Any] = {
        "output_path": str(folder / names[0]),
        "n_rows": sum(len(p) for p in parts),
        "columns": columns[:MAX_LISTED_COLUMNS],
        "n_columns": len(columns),
    }
    if len(parts) == 2:
        outputs.update(
            train_path=str(folder / names[0]),
            test_path=str(folder / names[1]),
            n_train_rows=len(parts[0]),
            n_test_rows=len(parts[1]),
        )
    return outputs


def _write(
    folder: Path, names: list[str], parts: list[pd.DataFrame], spec: PreprocessSpec, manifest: dict[str, Any]
) -> None:
    for name, part in zip(names, parts, strict=True):
        try:
            if spec.output_format == "parquet":
                part.to_parquet(folder / name, index=False)
            else:
                part.to_csv(folder / name, index=False)
        except (ValueError, TypeError, ImportError) as exc:
            raise TaskFailure(
                ErrorKind.DATA_ERROR,
                f"The result could not be written as {spec.output_format}: {type(exc).__name__}: "
                f"{str(exc)[:300]}.",
                "Write CSV (output_format='csv'), which takes any values.",
            ) from None
    manifest["operations_order"] = [op for op in OPERATIONS if op in manifest["operations"]]
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str), encoding="utf-8")


def _sha256(data_source: str) -> str | None:
    path = parse_source(data_source).path
    return sha256_of(path) if path is not None else None
