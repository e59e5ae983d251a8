"""Checks a scikit-learn task's data before the task exists: columns, classes, rows per fold, encodable
text (standard library only: it runs in the server process)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from mcp_trainer.errors import InvalidInputError
from mcp_trainer.preflight.readers import (
    NA_VALUES,
    ParquetReader,
    Reader,
    Sample,
    check_file,
    header_names,
    text_errors,
    text_rows,
)
from mcp_trainer.specs.sources import DataSource, parse_source
from mcp_trainer.specs.tabular import TabularSpec

__all__ = ["MAX_CATEGORIES", "DatasetSummary", "check_dataset", "min_rows_for"]

# A text column with more distinct values than this (and mostly unique) is free text or an identifier.
MAX_CATEGORIES = 200


@dataclass
class _Column:
    name: str
    missing: int = 0
    non_numeric: int = 0
    example: str | None = None  # a non-numeric value, for messages
    distinct: set[str] = field(default_factory=set)
    overflow: bool = False
    fractional: str | None = None  # a number with a fractional part, for messages
    dates: int = 0  # non-numeric values that are ISO 8601 dates or date-times

    def add(self, value: str) -> None:
        v = value.strip()
        if v in NA_VALUES:
            self.missing += 1
            return
        if not _is_number(v):
            self.non_numeric += 1
            if self.example is None:
                self.example = v
            if self.dates == self.non_numeric - 1 and _is_date(v):
                self.dates += 1
        elif self.fractional is None and not float(v).is_integer():
            self.fractional = v
        if not self.overflow:
            self.distinct.add(v)
            if len(self.distinct) > MAX_CATEGORIES:
                self.overflow = True


@dataclass(frozen=True)
class DatasetSummary:
    """What the check learned: rows, the feature columns and which are categorical."""

    rows: int
    features: list[str]
    categorical: list[str]
    classes: list[str] | None
    dates: list[str] = field(default_factory=list)


def _is_date(v: str) -> bool:
    """An ISO 8601 date or date-time (the worker parses these with pandas: trainers/tabular/features.py)."""
    if len(v) < 10 or not v[:4].isdigit() or v[4] != "-":
        return False
    try:
        datetime.fromisoformat(v)
    except ValueError:
        return False
    return True


def _is_number(v: str) -> bool:
    try:
        return math.isfinite(float(v))
    except ValueError:
        return False


def min_rows_for(cv_folds: int) -> int:
    return max(2 * cv_folds, 10)


def check_dataset(spec: TabularSpec) -> DatasetSummary:
    """Validate `spec`'s data source; raise InvalidInputError naming the problem and its fix."""
    source = parse_source(spec.data_source)
    if source.format == "bundled":
        return _check_bundled(spec, source)
    path = source.path
    assert path is not None
    check_file(path, text=source.format != "parquet")
    if source.format == "parquet":
        return _check_rows(ParquetReader(path, read_rows=spec.validate_data), spec, path)
    with text_errors(path), text_rows(path, source.format) as (reader, lines):
        return _check_rows(reader, spec, path, lambda: lines.chars)


def _check_rows(
    reader: Reader, spec: TabularSpec, path: Path, chars: Callable[[], int] = lambda: 0
) -> DatasetSummary:
    header = header_names(next(reader, None), path)
    _check_header(header, spec, path)
    if not spec.validate_data:
        return DatasetSummary(rows=-1, features=_features(header, spec), categorical=[], classes=None)
    return _scan(Sample(reader, chars), header, spec)


def _check_bundled(spec: TabularSpec, source: DataSource) -> DatasetSummary:
    data = source.bundled
    assert data is not None
    kind = "classification" if spec.is_classification else "regression"
    if data.kind != kind:
        raise InvalidInputError(
            f"{spec.data_source} is a {data.kind} dataset; {spec.task_type} is {kind}.",
            f"Use the {data.kind} task type, or another dataset.",
        )
    unknown = [t for t in spec.targets if t not in data.targets]
    if unknown:
        raise InvalidInputError(
            f"target_column {unknown} is not a target of {spec.data_source}.",
            f"Its target columns are: {', '.join(data.targets)}.",
        )
    if data.rows < min_rows_for(spec.cv_folds):
        raise InvalidInputError(
            f"{spec.data_source} has {data.rows} rows; cv_folds={spec.cv_folds} needs at least "
            f"{min_rows_for(spec.cv_folds)}.",
            "Lower cv_folds.",
        )
    return DatasetSummary(rows=data.rows, features=[], categorical=[], classes=None)


def _features(header: list[str], spec: TabularSpec) -> list[str]:
    if spec.feature_columns is not None:
        return list(spec.feature_columns)
    return [h for h in header if h not in spec.targets]


def _check_header(header: list[str], spec: TabularSpec, path: Path) -> None:
    if len(header) < 2:
        sep = next((s for s in (";", "\t", "|") if s in header[0]), None)
        if header[0].startswith("#"):
            hint = (
                f"Its first line looks like a comment ({header[0][:60]!r}): the first line must be the "
                "header (the column names); remove the comment lines."
            )
        elif sep:
            hint = f"It looks separated by {sep!r}; save it comma-separated."
        else:
            hint = "Training data needs at least one feature column and a target column."
        raise InvalidInputError(f"data_source {str(path)!r} has only one column.", hint)
    dupes = sorted(name for name, times in Counter(header).items() if times > 1)
    if dupes:
        raise InvalidInputError(
            f"Column names repeat in the header: {dupes}.", "Give every column its own name."
        )
    shown = ", ".join(header[:30]) + (" …" if len(header) > 30 else "")
    for target in spec.targets:
        if target not in header:
            raise InvalidInputError(
                f"target_column {target!r} is not a column of {path.name}.", f"Its columns are: {shown}."
            )
    for feature in spec.feature_columns or []:
        if feature not in header:
            raise InvalidInputError(
                f"feature column {feature!r} is not a column of {path.name}.", f"Its columns are: {shown}."
            )
    if not _features(header, spec):
        raise InvalidInputError(
            f"{path.name} has no feature columns besides the target.", "Add at least one input column."
        )


def _scan(reader: Sample, header: list[str], spec: TabularSpec) -> DatasetSummary:
    """Check the sampled rows. Only what the sample proves is refused; what only the whole file could
    prove (too few rows, a single class, an empty column) is left to the worker when the sample is not
    the whole file."""
    cols = [_Column(h) for h in header]
    rows = 0
    for row in reader:
        if not row:
            continue
        if len(row) != len(header):
            raise InvalidInputError(
                f"Line {reader.line_num} of the CSV has {len(row)} fields but the header has {len(header)}.",
                "Fix that line (a stray comma or missing quotes) and submit again.",
            )
        for col, value in zip(cols, row, strict=True):
            col.add(value)
        rows += 1
    by_name = {c.name: c for c in cols}
    targets = [by_name[t] for t in spec.targets]
    features = [by_name[f] for f in _features(header, spec)]
    missing_target = max(t.missing for t in targets)
    usable = rows - missing_target
    need = min_rows_for(spec.cv_folds)
    whole = reader.complete
    if usable < need and whole:
        raise InvalidInputError(
            f"The data has {usable} usable rows; cv_folds={spec.cv_folds} with a held-out split needs at "
            f"least {need}.",
            "Add rows or lower cv_folds.",
        )
    classes = _check_targets(targets, spec, whole)
    categorical: list[str] = []
    dates: list[str] = []
    for col in features:
        if col.missing == rows and whole:
            raise InvalidInputError(
                f"Feature column {col.name!r} has no values.",
                "Leave it out with feature_columns, or fill it in.",
            )
        if col.non_numeric and col.dates == col.non_numeric and col.non_numeric == rows - col.missing:
            dates.append(col.name)  # parsed into year, month, day, weekday (and hour) by the worker
        elif col.non_numeric:
            if col.overflow:
                raise InvalidInputError(
                    f"Feature column {col.name!r} is text with more than {MAX_CATEGORIES} distinct values "
                    f"(e.g. {col.example!r}): free text or an identifier, too many categories to encode.",
                    "Leave it out by listing the other columns in feature_columns.",
                )
            categorical.append(col.name)
    if spec.missing_values == "error":
        holes = [c.name for c in features + targets if c.missing]
        if holes:
            raise InvalidInputError(
                f"Columns with missing values: {holes}.",
                "Fill them in, or set missing_values='impute' to fill features (rows missing a target are "
                "dropped).",
            )
    return DatasetSummary(
        rows=usable,
        features=[c.name for c in features],
        categorical=categorical,
        classes=classes,
        dates=dates,
    )


def _check_targets(targets: list[_Column], spec: TabularSpec, whole: bool) -> list[str] | None:
    """The classes of a classification target (None for regression), once the targets fit the task.
    `whole`: the columns saw every row (else a single class may be only the sample's)."""
    classes: list[str] | None = None
    if spec.is_classification:
        target = targets[0]
        regression = spec.task_type.replace("_classification", "_regression").replace(
            "logistic_regression", "ridge_regression"
        )
        if target.non_numeric == 0 and target.fractional is not None:
            raise InvalidInputError(
                f"target_column {target.name!r} holds continuous numbers (such as {target.fractional!r}); "
                f"{spec.task_type} predicts categories.",
                f"Use a regression task type such as {regression}, or round or bin the values into classes.",
            )
        if target.overflow:
            raise InvalidInputError(
                f"target_column {target.name!r} has more than {MAX_CATEGORIES} distinct values, too many "
                "classes for classification.",
                f"If it is a quantity, use a regression task type such as {regression}.",
            )
        if len(target.distinct) < 2 and whole:
            only = next(iter(target.distinct), "nothing")
            raise InvalidInputError(
                f"target_column {target.name!r} has a single class ({only!r}); classification needs two.",
                "Check that you picked the right column, or add rows of the other classes.",
            )
        classes = sorted(target.distinct)
    else:
        for target in targets:
            if target.non_numeric:
                raise InvalidInputError(
                    f"target_column {target.name!r} has non-numeric values such as {target.example!r}; "
                    "regression needs numbers.",
                    "Clean the column, or use svm_classification to predict categories.",
                )
    return classes
