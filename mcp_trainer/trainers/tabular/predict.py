"""Batch prediction with a saved model, run in a worker process (it unpickles and imports scikit-learn)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd

from mcp_trainer.artifacts.model_dir import verified_model_bytes
from mcp_trainer.artifacts.signing import ModelSigner
from mcp_trainer.errors import InvalidInputError
from mcp_trainer.specs.sources import parse_source
from mcp_trainer.trainers.tabular.data import as_category_strings, read_frame
from mcp_trainer.trainers.tabular.features import parse_dates

__all__ = ["MAX_PREDICT_ROWS", "load_model", "model_inputs", "predict", "unseen_categories"]

MAX_PREDICT_ROWS = 10_000


def _plain(values: Any) -> list[Any]:
    return [v.item() if isinstance(v, np.generic) else v for v in values]


def _frame(meta: dict[str, Any], rows: list[dict[str, Any]] | None, data_source: str | None) -> pd.DataFrame:
    features: list[str] = meta["features"]["names"]
    if rows is not None:
        frame = pd.DataFrame(rows)
        extra = sorted(set(frame.columns) - set(features))
        if extra:
            raise InvalidInputError(
                f"Rows have columns the model was not trained on: {extra}.", f"Its features are: {features}."
            )
    else:
        assert data_source is not None
        frame = read_frame(parse_source(data_source), max_rows=MAX_PREDICT_ROWS)
        frame.columns = [str(c).strip() for c in frame.columns]
        if len(frame) > MAX_PREDICT_ROWS:
            raise InvalidInputError(
                f"data_source has more than the {MAX_PREDICT_ROWS} rows one call predicts.",
                "Split the data into files of at most that many rows.",
            )
    return model_inputs(meta, frame)


def model_inputs(meta: dict[str, Any], frame: pd.DataFrame) -> pd.DataFrame:
    """The columns a saved model reads, taken from `frame` and typed as in training (numbers as floats,
    categories and dates as text); InvalidInputError names a missing column or a value it cannot take."""
    features: list[str] = meta["features"]["names"]
    missing = [f for f in features if f not in frame.columns]
    if missing:
        raise InvalidInputError(f"Missing feature columns: {missing}.", f"The model needs: {features}.")
    frame = frame[features].copy()
    for name, kind in meta["features"]["types"].items():
        if kind != "numeric":  # categories and dates (parsed by the pipeline) are text
            frame[name] = as_category_strings(frame[name])
            continue
        converted = pd.to_numeric(frame[name], errors="coerce")
        bad = frame[name][converted.isna() & frame[name].notna()]
        if len(bad):
            raise InvalidInputError(
                f"Feature {name!r} must be numeric; got {bad.iloc[0]!r} (row {int(bad.index[0])}).",
                "Send numbers (or null for a missing value) in that column.",
            )
        infinite = np.isinf(converted.to_numpy(dtype="float64", na_value=np.nan))
        if infinite.any():
            row = int(np.flatnonzero(infinite)[0])
            raise InvalidInputError(
                f"Feature {name!r} is infinite in row {row}; a model predicts from finite numbers only.",
                "Send a finite number, or null for a missing value (NaN counts as missing too).",
            )
        frame[name] = converted.astype("float64")
    return frame


def load_model(models_dir: Path, model_id: str, signer: ModelSigner) -> tuple[Any, dict[str, Any]]:
    """A saved model, unpickled only once its sha256 matches its metadata and its signature verifies, and
    its metadata; InvalidInputError otherwise (artifacts/model_dir.py)."""
    data, meta = verified_model_bytes(models_dir, model_id, signer)
    return joblib.load(io.BytesIO(data)), meta


def _predict(model: Any, frame: pd.DataFrame) -> Any:
    """The model's predictions; missing values it cannot fill (a model saved before every model imputed
    them) are refused in words."""
    try:
        return model.predict(frame)
    except ValueError as exc:
        if "NaN" not in str(exc):
            raise
        holes = [str(c) for c in frame.columns if frame[c].isna().any()]
        raise InvalidInputError(
            f"This model cannot fill missing values, and these features have some: {holes}.",
            "Fill them in, or train the model again (models trained now fill missing numbers with the "
            "training median).",
        ) from None


def unseen_categories(model: Any, frame: pd.DataFrame) -> list[dict[str, Any]]:
    """A note for every category value the model never saw in training: its one-hot encoding is all
    zeros, as if the value were missing, and the caller should know the prediction rests on that."""
    known = _known_categories(model)
    notes: list[dict[str, Any]] = []
    for column, categories in known.items():
        if column not in frame.columns:
            continue
        for row, value in enumerate(frame[column].tolist()):
            if isinstance(value, str) and value not in categories:
                notes.append(
                    {
                        "row": row,
                        "column": column,
                        "value": value,
                        "note": "a category not seen in training; predicted as if it were missing",
                    }
                )
    return notes[:1000]


def _unparsed_dates(meta: dict[str, Any], frame: pd.DataFrame) -> list[dict[str, Any]]:
    """A note for every value of a date column that is not an ISO 8601 date: it counts as missing."""
    notes: list[dict[str, Any]] = []
    for name, kind in meta["features"]["types"].items():
        if kind != "datetime":
            continue
        unparsed = frame[name].notna() & parse_dates(frame[name]).isna()
        for row in np.flatnonzero(unparsed.to_numpy())[:1000]:
            notes.append(
                {
                    "row": int(row),
                    "column": name,
                    "value": frame[name].iloc[row],
                    "note": "not an ISO 8601 date; predicted as if it were missing",
                }
            )
    return notes


def _known_categories(model: Any) -> dict[str, set[str]]:
    """The categories each categorical column had in training, from the fitted one-hot encoder."""
    preprocess = getattr(model, "named_steps", {}).get("preprocess")
    for name, transformer, columns in getattr(preprocess, "transformers_", []):
        if name != "categorical":
            continue
        encoder = transformer.named_steps["onehot"]
        return {col: {str(c) for c in cats} for col, cats in zip(columns, encoder.categories_, strict=True)}
    return {}


def predict(
    models_dir: str,
    model_id: str,
    rows: list[dict[str, Any]] | None,
    data_source: str | None,
    signing_key_file: str,
) -> dict[str, Any]:
    """Predictions (and class probabilities where the model has them) for rows or a data source."""
    model, meta = load_model(Path(models_dir), model_id, ModelSigner(Path(signing_key_file)))
    frame = _frame(meta, rows, data_source)
    predictions = _predict(model, frame)
    out: dict[str, Any] = {
        "model_id": model_id,
        "n_rows": len(frame),
        "classes": None,
        "probabilities": None,
        "notes": unseen_categories(model, frame) + _unparsed_dates(meta, frame),
    }
    if predictions.ndim == 2:
        out["predictions"] = [_plain(row) for row in predictions]
    else:
        out["predictions"] = _plain(predictions)
    if meta.get("classes") is not None:
        out["classes"] = meta["classes"]
        try:
            proba = model.predict_proba(frame)
        except AttributeError:  # e.g. an SVC trained without probability estimates
            proba = None
        if proba is not None:
            out["probabilities"] = [[round(float(p), 6) for p in row] for row in proba]
    return out
