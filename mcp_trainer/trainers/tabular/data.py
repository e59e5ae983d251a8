"""Tabular data for scikit-learn trainers: read the CSV, split features and target, build the preprocessor."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sklearn
import sklearn.datasets
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from mcp_trainer.files import sha256_of
from mcp_trainer.preflight.readers import ENCODING, NA_VALUES
from mcp_trainer.preflight.tabular import min_rows_for
from mcp_trainer.records import ErrorKind
from mcp_trainer.specs.sources import DataSource, parse_source
from mcp_trainer.specs.tabular import TabularSpec
from mcp_trainer.trainers.base import TaskFailure
from mcp_trainer.trainers.tabular.features import DateFeatures, parse_dates

__all__ = [
    "TabularData",
    "as_category_strings",
    "build_preprocessor",
    "load_frame",
    "load_tabular",
    "read_frame",
]


@dataclass
class TabularData:
    X: pd.DataFrame
    y: Any  # 1-d array for one target, 2-d for several
    numeric: list[str]
    categorical: list[str]
    dates: list[str]  # ISO 8601 date or date-time columns, kept as text and parsed by the pipeline
    targets: list[str]
    classes: list[Any] | None
    rows_dropped: int
    sha256: str


def read_frame(source: DataSource, max_rows: int | None = None) -> pd.DataFrame:
    """Read a data source into a DataFrame, with the same notion of missing values as the preflight check.
    With `max_rows`, reading stops after that many rows and one more (so a caller can tell the data is
    longer), whatever the file's size."""
    nrows = None if max_rows is None else max_rows + 1
    if source.format == "bundled":
        bundled = source.bundled
        assert bundled is not None
        data = getattr(sklearn.datasets, bundled.loader)(as_frame=True)
        frame: pd.DataFrame = data.frame
        if bundled.kind == "classification" and hasattr(data, "target_names"):
            names = list(data.target_names)  # readable classes ("setosa"), not codes
            frame["target"] = [str(names[i]) for i in frame["target"]]
        return frame if nrows is None else frame.head(nrows)
    path = source.path
    assert path is not None
    if source.format in ("parquet", "jsonl"):
        frame = (
            _read_parquet(path, nrows)
            if source.format == "parquet"
            else pd.read_json(path, lines=True, encoding=ENCODING, convert_dates=False, nrows=nrows)
        )
        # The same words mean "missing" in every format (see preflight.NA_VALUES).
        return frame.replace(sorted(NA_VALUES), np.nan)
    return pd.read_csv(
        path,
        sep="\t" if source.format == "tsv" else ",",
        encoding=ENCODING,
        na_values=sorted(NA_VALUES),
        keep_default_na=False,
        skipinitialspace=True,
        nrows=nrows,
    )


def _read_parquet(path: Path, nrows: int | None) -> pd.DataFrame:
    if nrows is None:
        return pd.read_parquet(path)
    import pyarrow.parquet as pq

    file = pq.ParquetFile(path)
    batch = next(file.iter_batches(batch_size=nrows), None)
    return file.schema_arrow.empty_table().to_pandas() if batch is None else batch.to_pandas()


def load_tabular(spec: TabularSpec) -> TabularData:
    """Read and check the data of `spec`; raises TaskFailure (data_error) with an actionable message."""
    source = parse_source(spec.data_source)
    frame = _read(spec, source)
    targets = spec.targets
    before = len(frame)
    frame = frame.dropna(subset=targets)
    if len(frame) < min_rows_for(spec.cv_folds):
        raise TaskFailure(
            ErrorKind.DATA_ERROR,
            f"Only {len(frame)} rows have a target value; cv_folds={spec.cv_folds} needs at least "
            f"{min_rows_for(spec.cv_folds)}.",
            "Add rows or lower cv_folds.",
        )
    X, numeric, categorical, dates = _features(spec, frame)
    y, classes = _targets(spec, frame)
    return TabularData(
        X=X,
        y=y,
        numeric=numeric,
        categorical=categorical,
        dates=dates,
        targets=targets,
        classes=classes,
        rows_dropped=before - len(frame),
        sha256=sha256_of(source.path) if source.path else f"sklearn-{sklearn.__version__}",
    )


def load_frame(data_source: str) -> pd.DataFrame:
    """The whole data source as a frame, its column names stripped; raises TaskFailure (data_error) when
    it is gone or cannot be read."""
    try:
        frame = read_frame(parse_source(data_source))
    except FileNotFoundError:
        raise TaskFailure(
            ErrorKind.DATA_ERROR,
            f"data_source {data_source!r} no longer exists.",
            "Restore it and submit again.",
        ) from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError) as exc:
        raise TaskFailure(
            ErrorKind.DATA_ERROR, f"data_source {data_source!r} could not be read: {exc}."
        ) from None
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def _read(spec: TabularSpec, source: DataSource) -> pd.DataFrame:
    """The data source as a frame whose columns include the spec's targets and features."""
    frame = load_frame(spec.data_source)
    missing = [c for c in [*spec.targets, *(spec.feature_columns or [])] if c not in frame.columns]
    if missing:
        name = source.path.name if source.path else spec.data_source
        raise TaskFailure(
            ErrorKind.DATA_ERROR,
            f"Columns {missing} are not in {name}.",
            f"Its columns are {list(frame.columns)}.",
        )
    return frame


def _features(spec: TabularSpec, frame: pd.DataFrame) -> tuple[pd.DataFrame, list[str], list[str], list[str]]:
    """The feature columns: numeric ones as floats, date columns and the others (categories) as text."""
    features = spec.feature_columns or [c for c in frame.columns if c not in spec.targets]
    X = frame[features].copy()
    numeric: list[str] = []
    categorical: list[str] = []
    dates: list[str] = []
    for col in features:
        present = X[col].notna().sum()
        if present == 0:  # the check at submit sees a sample only: this is where a whole file is read
            raise TaskFailure(
                ErrorKind.DATA_ERROR,
                f"Feature column {col!r} has no values.",
                "Leave it out with feature_columns, or fill it in.",
            )
        converted = pd.to_numeric(X[col], errors="coerce")
        if converted.notna().sum() == present:
            X[col] = converted.astype("float64")
            numeric.append(col)
        else:
            X[col] = as_category_strings(X[col])
            is_date = present > 0 and parse_dates(X[col]).notna().sum() == present
            (dates if is_date else categorical).append(col)
    # Column-by-column assignment leaves the frame in many blocks; every fit would pay to consolidate it.
    X = X.copy()
    if spec.missing_values == "error" and X.isna().any().any():
        holes = [c for c in features if X[c].isna().any()]
        raise TaskFailure(
            ErrorKind.DATA_ERROR,
            f"Columns with missing values: {holes}.",
            "Fill them in or use missing_values='impute'.",
        )
    return X, numeric, categorical, dates


def _targets(spec: TabularSpec, frame: pd.DataFrame) -> tuple[Any, list[Any] | None]:
    """The target values (1-d for one target, 2-d for several) and, for classification, the classes."""
    targets = spec.targets
    if spec.is_classification:
        y_series = frame[targets[0]]
        uniques = pd.unique(y_series)
        if len(uniques) < 2:
            raise TaskFailure(
                ErrorKind.DATA_ERROR,
                f"target_column {targets[0]!r} has one class only; classification needs two.",
            )
        return y_series.to_numpy(), sorted(uniques.tolist(), key=lambda v: (str(type(v)), v))
    y_frame = frame[targets].apply(pd.to_numeric, errors="coerce")
    if y_frame.isna().any().any():
        bad = [c for c in targets if y_frame[c].isna().any()]
        raise TaskFailure(
            ErrorKind.DATA_ERROR, f"Target columns {bad} have non-numeric values; regression needs numbers."
        )
    y = y_frame.to_numpy(dtype="float64")
    return (y[:, 0] if len(targets) == 1 else y), None


def as_category_strings(values: pd.Series) -> pd.Series:
    """A categorical column as the encoder sees it, in training and prediction alike: Python strings,
    missing values NaN."""
    return values.astype("string").astype(object).where(values.notna(), np.nan)


def build_preprocessor(data: TabularData, *, scale: bool) -> Any:
    """Impute numeric columns with the median (and scale them), turn date columns into numbers (their
    parts, then as numeric), one-hot encode categorical ones. The imputers are there whether or not the
    training data has missing values, so that a prediction may have some.

    All-numeric data takes a plain pipeline: a ColumnTransformer costs ~35 % more per fit on small data,
    which a search of many cross-validated fits pays hundreds of times.
    """
    # Always an imputer, even when the training data has no hole: a row to predict may have one (null).
    numeric_steps: list[tuple[str, Any]] = [("impute", SimpleImputer(strategy="median"))]
    if scale:
        numeric_steps.append(("scale", StandardScaler()))
    if not data.categorical and not data.dates:
        return Pipeline(numeric_steps)
    transformers: list[tuple[str, Any, list[str]]] = []
    if data.numeric:
        transformers.append(("numeric", Pipeline(numeric_steps), data.numeric))
    if data.dates:
        transformers.append(("dates", Pipeline([("parse", DateFeatures()), *numeric_steps]), data.dates))
    if data.categorical:
        categorical = Pipeline(
            [
                ("impute", SimpleImputer(strategy="most_frequent")),
                ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
            ]
        )
        transformers.append(("categorical", categorical, data.categorical))
    return ColumnTransformer(transformers, remainder="drop")
