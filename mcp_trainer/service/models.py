"""The model half of the Python API: list, describe, report on, predict with, generate with and delete
saved models. Files are read in worker threads; models are loaded only in job processes."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mcp_trainer.artifacts.model_dir import (
    REPORTS_DIR,
    SCRIPT_OUTPUT_DIR,
    delete_model_dir,
    list_metadata,
    model_dir,
    read_metadata,
)
from mcp_trainer.artifacts.plots_state import plots_in_flight, settled_importances
from mcp_trainer.artifacts.reports import MAX_REPORT_BYTES, load_report
from mcp_trainer.errors import InvalidInputError, TrainerError
from mcp_trainer.ids import check_model_id
from mcp_trainer.offload import off_loop
from mcp_trainer.preflight.finetune import MAX_NEW_TOKENS, check_finetune_installed
from mcp_trainer.records import TaskRecord
from mcp_trainer.service.audit import audited
from mcp_trainer.service.core import ServiceCore
from mcp_trainer.service.paging import check_limit
from mcp_trainer.specs.finetune import FINETUNE_TASK_TYPES
from mcp_trainer.specs.script import SCRIPT_TASK_TYPES
from mcp_trainer.specs.sources import parse_source
from mcp_trainer.views.models import Generation, ModelInfo, ModelPage, ModelReport, ModelSummary, Predictions

__all__ = ["MAX_PREDICT_ROWS", "ModelMethods"]

MAX_PREDICT_ROWS = 10_000
_TABULAR_PREDICT = "mcp_trainer.trainers.tabular.predict:predict"
_TEXT_PREDICT = "mcp_trainer.trainers.finetune.infer:predict_text"
_GENERATE = "mcp_trainer.trainers.finetune.infer:generate"


class ModelMethods(ServiceCore):
    """Saved models: listings, metadata, reports, predictions, generations, deletion."""

    async def list_models(
        self,
        *,
        task_type: str | None = None,
        user_id: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> ModelPage:
        """Saved models newest first, filtered, one page at a time (pass `next_cursor` back as `cursor`)."""
        check_limit(limit)
        if cursor is not None:
            check_model_id(cursor)
        metas = [
            m
            for m in await off_loop(list_metadata, self.models_dir)
            if (task_type is None or m.get("task_type") == task_type)
            and (user_id is None or m.get("user_id") == user_id)
        ]
        start = 0
        if cursor is not None:
            start = next((i + 1 for i, m in enumerate(metas) if m["model_id"] == cursor), 0)
            if start == 0:
                raise InvalidInputError("cursor names no listed model.", "Omit it to start from the newest.")
        page = metas[start : start + limit]
        more = start + limit < len(metas)
        return ModelPage(
            models=[ModelSummary.of(m) for m in page],
            total=len(metas),
            next_cursor=page[-1]["model_id"] if more and page else None,
        )

    async def model_info(self, model_id: str) -> ModelInfo:
        """Metadata and metrics of a saved model; raises InvalidInputError for an unknown id."""
        check_model_id(model_id)

        def read() -> ModelInfo:
            meta = read_metadata(self.models_dir, model_id)
            reports_dir = model_dir(self.models_dir, model_id) / REPORTS_DIR
            reports = (
                sorted(p.name for p in reports_dir.iterdir() if not p.name.startswith("."))
                if reports_dir.is_dir()
                else []
            )
            being_drawn, missing = plots_in_flight(meta.get("plots"))
            if "feature_importances" not in being_drawn:  # computed with that plot: settled with it
                why = missing.get("feature_importances", "its computation ended before it finished")
                meta["feature_importances"] = settled_importances(meta.get("feature_importances"), why)
            return ModelInfo.full(meta, reports, being_drawn)

        return await off_loop(read)

    async def model_report(
        self, model_id: str, plots: list[str] | None = None, *, max_bytes: int = MAX_REPORT_BYTES
    ) -> tuple[ModelReport, dict[str, bytes]]:
        """A model's readable summary and its report plots: the report, and the PNG bytes of the plots it
        carries by plot name. `plots` picks some (None: all, []: none); beyond `max_bytes` in total the
        rest are listed but left out, and `note` says how to ask for them. Raises InvalidInputError for
        an unknown model or plot name."""
        check_model_id(model_id)
        return await off_loop(lambda: load_report(self.models_dir, model_id, plots, max_bytes=max_bytes))

    @audited("delete_model", "model_id")
    async def delete_model(self, model_id: str) -> None:
        """Remove a saved model's directory, and say so in its task's status; raises InvalidInputError for
        an unknown id."""
        meta = await off_loop(read_metadata, self.models_dir, check_model_id(model_id))
        await off_loop(delete_model_dir, self.models_dir, model_id)
        task_id = meta.get("task_id")
        if isinstance(task_id, str):
            with contextlib.suppress(TrainerError):  # a task file removed or never here (another queue)
                await self._change(task_id, _mark_deleted(model_id))

    async def predict(
        self,
        model_id: str,
        *,
        rows: list[dict[str, Any]] | None = None,
        data_source: str | None = None,
        timeout_s: float = 40.0,
    ) -> Predictions:
        """Predict with a saved model in a separate process (the model file is checked against its sha256)."""
        check_model_id(model_id)
        if (rows is None) == (data_source is None):
            raise InvalidInputError("Give either rows or data_source, not both and not neither.")
        if rows is not None and not rows:
            raise InvalidInputError("rows is empty; give at least one row.")
        if rows is not None and len(rows) > MAX_PREDICT_ROWS:
            raise InvalidInputError(
                f"{len(rows)} rows is more than the {MAX_PREDICT_ROWS} one call predicts.", "Split them."
            )
        target, data_source = await off_loop(self._prediction_target, model_id, data_source, rows)
        out = await self._parts().executor.run_job(
            target,
            {
                "models_dir": str(self.models_dir),
                "model_id": model_id,
                "rows": rows,
                "data_source": data_source,
                "signing_key_file": str(self._signing_key),
            },
            max(timeout_s, 120.0) if target == _TEXT_PREDICT else timeout_s,
        )
        return Predictions.model_validate(out)

    def _prediction_target(
        self, model_id: str, data_source: str | None, rows: list[dict[str, Any]] | None
    ) -> tuple[str, str | None]:
        """Which job predicts with this model, and the absolute data file (blocking). Rows for a fine-tune
        are checked here, before a job process pays for importing torch."""
        meta = read_metadata(self.models_dir, model_id)  # a clear error if unknown
        if meta.get("task_type") in SCRIPT_TASK_TYPES:
            files = model_dir(self.models_dir, model_id) / SCRIPT_OUTPUT_DIR
            raise InvalidInputError(
                f"Model {model_id} is the output directory of a script task: the server cannot run it.",
                f"Its files are in {files}; load them with your own code (get_model_info lists them with "
                "their sha256).",
            )
        target = _TABULAR_PREDICT
        if meta.get("task_type") in FINETUNE_TASK_TYPES:
            if meta.get("task_type") != "text_classification_finetune":
                raise InvalidInputError(
                    f"Model {model_id} is a {meta.get('task_type')} model, which generates text.",
                    "Use generate for it; predict is for classifiers and regressors.",
                )
            if rows is not None:
                _check_text_rows(meta, rows)
            check_finetune_installed()
            target = _TEXT_PREDICT
        if data_source is not None:
            source = parse_source(data_source)
            if source.path is not None:
                data_source = self.roots.data_file(data_source)
                if not Path(data_source).is_file():
                    raise InvalidInputError(f"data_source {data_source!r} does not exist.")
        return target, data_source

    async def generate(
        self,
        model_id: str,
        prompt: str,
        *,
        max_new_tokens: int = 64,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int = 0,
        timeout_s: float = 120.0,
    ) -> Generation:
        """A short completion from a causal LM fine-tune, computed in a separate process."""
        check_model_id(model_id)
        if not prompt:
            raise InvalidInputError("prompt is empty.", "Give the text to continue.")
        if not 1 <= max_new_tokens <= MAX_NEW_TOKENS:
            raise InvalidInputError(f"max_new_tokens must be between 1 and {MAX_NEW_TOKENS}.")
        if not (0.0 <= temperature <= 5.0 and 0.0 < top_p <= 1.0):
            raise InvalidInputError("temperature must be in [0, 5] and top_p in (0, 1].")
        await off_loop(self._check_generator, model_id)
        args = {
            "models_dir": str(self.models_dir),
            "model_id": model_id,
            "prompt": prompt,
            "max_new_tokens": max_new_tokens,
            "temperature": temperature,
            "top_p": top_p,
            "seed": seed,
            "signing_key_file": str(self._signing_key),
        }
        return Generation.model_validate(await self._parts().executor.run_job(_GENERATE, args, timeout_s))

    def _check_generator(self, model_id: str) -> None:
        meta = read_metadata(self.models_dir, model_id)
        if meta.get("task_type") != "causal_lm_finetune":
            raise InvalidInputError(
                f"Model {model_id} is a {meta.get('task_type')} model; "
                "generate needs a causal_lm_finetune model.",
                "Use predict for classifiers; list_models shows each model's task type.",
            )
        check_finetune_installed()


def _check_text_rows(meta: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """Every row holds the text a classifier fine-tune reads, under the column it was trained on."""
    names = (meta.get("features") or {}).get("names") or ["text"]
    column = str(names[0])
    for i, row in enumerate(rows):
        value = row.get(column) if isinstance(row, dict) else None
        if not isinstance(value, str) or not value.strip():
            raise InvalidInputError(
                f"Row {i} has no text in {column!r}, the column this model reads.",
                f'Give every row {{"{column}": "some text"}}.',
            )


def _mark_deleted(model_id: str) -> Callable[[TaskRecord], None]:
    def mark(r: TaskRecord) -> None:
        if r.result is not None and r.result.model_id == model_id and r.result.deleted_at is None:
            r.result.deleted_at = time.time()

    return mark
