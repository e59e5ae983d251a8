"""The operations of a preprocess task on a pandas frame (worker side): filter, impute, encode, sample and
split, each returning the new frame and what it did, for the task's manifest. A problem the caller can
fix raises TaskFailure (data_error) in words; what only changes the result (a sample larger than the
data, a split that cannot keep the classes' shares) is said through `warn`.

Which columns are numbers, text or dates follows the training data reader (trainers/tabular/data.py), so
that a column a model would one-hot encode is the one `encode` treats as text.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from mcp_trainer.preflight.tabular import MAX_CATEGORIES
from mcp_trainer.records import ErrorKind
from mcp_trainer.specs.preprocess import ORDERING_OPS, PreprocessSpec, RowCondition
from mcp_trainer.trainers.base import TaskFailure
from mcp_trainer.trainers.tabular.data import as_category_strings
from mcp_trainer.trainers.tabular.features import parse_dates

__all__ = ["Kinds", "apply_filter", "encode", "impute", "kind_of", "sample", "split"]

Warn = Callable[[str], None]
Note = dict[str, Any]
MAX_STRATIFY_CLASSES = 50  # a numeric target with more distinct whole numbers is a quantity, not classes
_MISSING = "\x00missing"  # the class of rows without a target, when stratifying


def _fail(message: str, hint: str | None = None) -> TaskFailure:
    return TaskFailure(ErrorKind.DATA_ERROR, message, hint)


class Kinds:
    """Which columns of a frame hold numbers, dates (ISO 8601) and other text."""

    def __init__(self, frame: pd.DataFrame, skip: set[str]) -> None:
        self.numeric: list[str] = []
        self.dates: list[str] = []
        self.text: list[str] = []
        for col in frame.columns:
            if col in skip:
                continue
            kind = kind_of(frame[col])
            (self.numeric if kind == "numeric" else self.dates if kind == "date" else self.text).append(col)


def kind_of(values: pd.Series) -> str:
    """numeric (every present value a number), date (every one an ISO 8601 date) or text."""
    present = int(values.notna().sum())
    if int(pd.to_numeric(values, errors="coerce").notna().sum()) == present:
        return "numeric"
    if present and int(parse_dates(as_category_strings(values)).notna().sum()) == present:
        return "date"
    return "text"


# -- filter ------------------------------------------------------------------------------------------------


def apply_filter(frame: pd.DataFrame, conditions: list[RowCondition]) -> tuple[pd.DataFrame, list[Note]]:
    """The rows that meet every condition (a missing value meets none but is_missing)."""
    notes: list[Note] = []
    for condition in conditions:
        keep = _mask(frame, condition)
        notes.append({"condition": condition.describe(), "rows_removed": int((~keep).sum())})
        frame = frame[keep]
    return frame, notes


def _mask(frame: pd.DataFrame, c: RowCondition) -> pd.Series:
    values = frame[c.column]
    present = values.notna()
    if c.op == "is_missing":
        return ~present
    if c.op == "not_missing":
        return present
    numbers = pd.to_numeric(values, errors="coerce")
    numeric = int(numbers.notna().sum()) == int(present.sum())
    if c.op in ORDERING_OPS:
        if not numeric:
            example = values[present & numbers.isna()].iloc[0]
            raise _fail(
                f"filter {c.describe()}: column {c.column!r} holds text such as {str(example)[:60]!r}; "
                "<, <=, > and >= compare numbers.",
                "Use == / != / in / not_in for text, or pick a column of numbers.",
            )
        assert isinstance(c.value, int | float)
        compare = {"<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal}[c.op]
        return pd.Series(compare(numbers.to_numpy(dtype=float), float(c.value)), index=frame.index) & present
    wanted = c.value if isinstance(c.value, list) else [c.value]
    as_numbers = [_number(v) for v in wanted]
    if numeric and all(n is not None for n in as_numbers):
        hit = numbers.isin([n for n in as_numbers if n is not None])
    else:
        hit = as_category_strings(values).isin([str(v) for v in wanted])
    hit = hit & present
    return hit if c.op in ("==", "in") else present & ~hit


def _number(value: object) -> float | None:
    if isinstance(value, int | float):
        return float(value)
    try:
        number = float(str(value))
    except ValueError:
        return None
    return number if math.isfinite(number) else None


# -- impute and encode -------------------------------------------------------------------------------------


def impute(frame: pd.DataFrame, spec: PreprocessSpec, warn: Warn) -> tuple[pd.DataFrame, list[Note]]:
    """Missing values filled, numbers and text each by their strategy; the target is left as it is."""
    frame = frame.copy()
    kinds = Kinds(frame, {spec.target_column} if spec.target_column else set())
    notes: list[Note] = []
    if spec.impute_numeric is not None:
        for col in kinds.numeric:
            numbers = pd.to_numeric(frame[col], errors="coerce")
            holes = int(numbers.isna().sum())
            if not holes:
                continue
            fill = _numeric_fill(numbers, spec)
            if fill is None:
                warn(
                    f"impute: column {col!r} has no values at all, so it has no {spec.impute_numeric}; "
                    "left missing"
                )
                continue
            frame[col] = numbers.fillna(fill)
            notes.append({"column": col, "strategy": spec.impute_numeric, "value": fill, "filled": holes})
    if spec.impute_categorical is not None:
        for col in kinds.text + kinds.dates:
            holes = int(frame[col].isna().sum())
            if not holes:
                continue
            if spec.impute_categorical == "constant":
                value: str | None = spec.fill_value_categorical
            else:
                counts = as_category_strings(frame[col]).value_counts()
                value = str(counts.index[0]) if len(counts) else None  # the first of the most frequent
            if value is None:
                warn(
                    f"impute: column {col!r} has no values at all, so it has no most frequent one; "
                    "left missing"
                )
                continue
            frame[col] = as_category_strings(frame[col]).fillna(value)
            notes.append(
                {"column": col, "strategy": spec.impute_categorical, "value": value, "filled": holes}
            )
    return frame, notes


def _numeric_fill(numbers: pd.Series, spec: PreprocessSpec) -> float | None:
    if spec.impute_numeric == "constant":
        assert spec.fill_value_numeric is not None
        return float(spec.fill_value_numeric)
    value = numbers.mean() if spec.impute_numeric == "mean" else numbers.median()
    return None if pd.isna(value) else round(float(value), 12)


def encode(frame: pd.DataFrame, spec: PreprocessSpec) -> tuple[pd.DataFrame, list[Note]]:
    """Text columns as numbers: a 0/1 column per value (one_hot, in the column's place) or the code of the
    value among the sorted values (ordinal); a missing value stays missing (one_hot: all zeros)."""
    if spec.encode_columns is not None:
        missing = [c for c in spec.encode_columns if c not in frame.columns]
        if missing:
            raise _fail(
                f"encode_columns {missing} are not columns of the data.",
                f"Its columns: {list(frame.columns)}.",
            )
        columns = list(spec.encode_columns)
    else:
        columns = Kinds(frame, {spec.target_column} if spec.target_column else set()).text
    notes: list[Note] = []
    parts: dict[str, pd.DataFrame | pd.Series] = {str(c): frame[c] for c in frame.columns}
    for col in columns:
        text = as_category_strings(frame[col])
        categories = sorted(str(v) for v in text.dropna().unique())
        if spec.encode == "ordinal":
            codes = {value: i for i, value in enumerate(categories)}
            parts[col] = text.map(codes).astype("float64")
            notes.append({"column": col, "method": "ordinal", "codes": codes})
            continue
        if len(categories) > MAX_CATEGORIES:
            raise _fail(
                f"encode: column {col!r} has {len(categories)} distinct values; one-hot encoding would "
                f"add as many columns (at most {MAX_CATEGORIES}).",
                "Use encode='ordinal' for it, or drop it with drop_columns.",
            )
        names = [f"{col}_{value}" for value in categories]
        taken = set(parts) - {col}
        clash = [n for n in names if n in taken]
        if clash:
            raise _fail(
                f"encode: one-hot columns of {col!r} would be named like existing columns: {clash[:5]}.",
                "Rename or drop those columns first (drop_columns), or use encode='ordinal'.",
            )
        parts[col] = pd.DataFrame(
            {
                name: (text == value).fillna(False).astype("int64")
                for name, value in zip(names, categories, strict=True)
            },
            index=frame.index,
        )
        notes.append({"column": col, "method": "one_hot", "columns": names})
    return pd.concat(list(parts.values()), axis=1), notes


# -- sample and split --------------------------------------------------------------------------------------


def sample(frame: pd.DataFrame, spec: PreprocessSpec, warn: Warn) -> tuple[pd.DataFrame, Note]:
    """A seeded random sample of the rows, kept in the file's order."""
    rows = len(frame)
    if spec.sample_n is not None:
        if spec.sample_n >= rows:
            warn(
                f"sample_n={spec.sample_n} but {rows} rows remain after the operations before it: "
                "all are kept"
            )
            return frame, {"asked": spec.sample_n, "rows": rows}
        kept = frame.sample(n=spec.sample_n, random_state=spec.random_state)
    else:
        kept = frame.sample(frac=spec.sample_fraction, random_state=spec.random_state)
    if kept.empty:
        raise _fail(
            f"sample_fraction={spec.sample_fraction} of {rows} rows keeps none.",
            "Use a larger fraction or sample_n.",
        )
    return kept.sort_index(), {"rows": len(kept), "of": rows}


def split(frame: pd.DataFrame, spec: PreprocessSpec, warn: Warn) -> tuple[pd.DataFrame, pd.DataFrame, Note]:
    """Training and test rows (seeded), each in the file's order; stratified on the target's classes when
    asked, or by default when the target holds classes that both parts can keep."""
    assert spec.test_size is not None
    rows = len(frame)
    n_test = math.ceil(spec.test_size * rows)  # scikit-learn's rounding
    if rows < 2 or n_test >= rows:
        raise _fail(
            f"split: {rows} row(s) remain, too few for test_size={spec.test_size} to leave rows in both "
            "parts.",
            "Lower test_size, or keep more rows (filter, sample).",
        )
    labels = _strata(frame, spec, rows - n_test, n_test, warn)
    train, test = train_test_split(
        frame, test_size=spec.test_size, random_state=spec.random_state, stratify=labels
    )
    note = {
        "test_size": spec.test_size,
        "stratified": labels is not None,
        "train": len(train),
        "test": len(test),
    }
    return train.sort_index(), test.sort_index(), note


def _strata(frame: pd.DataFrame, spec: PreprocessSpec, n_train: int, n_test: int, warn: Warn) -> Any:
    """The labels to stratify on, or None; TaskFailure when stratify=true cannot be kept."""
    target = spec.target_column
    if target is None or spec.stratify is False:
        return None
    values = frame[target]
    numbers = pd.to_numeric(values, errors="coerce")
    is_numeric = int(numbers.notna().sum()) == int(values.notna().sum())
    whole = bool(np.all(np.mod(numbers.dropna().to_numpy(dtype=float), 1) == 0))
    if is_numeric and (not whole or numbers.nunique() > MAX_STRATIFY_CLASSES):
        if spec.stratify:
            raise _fail(
                f"stratify: target_column {target!r} holds a quantity (numbers, "
                f"{numbers.nunique()} distinct), not classes.",
                "Leave stratify out for a continuous target.",
            )
        return None
    labels = as_category_strings(values).fillna(_MISSING)
    counts = labels.value_counts()
    rare = counts[counts < 2]
    problem = None
    if len(rare):
        shown = ", ".join(repr(str(c)) for c in rare.index[:5])
        problem = f"class(es) {shown} of {target!r} have a single row, which cannot be in both parts"
    elif len(counts) > min(n_train, n_test):
        problem = f"{len(counts)} classes of {target!r} do not fit in a part of {min(n_train, n_test)} rows"
    if problem is None:
        return labels.to_numpy()
    if spec.stratify:
        raise _fail(f"stratify: {problem}.", "Leave stratify out, or drop those rows (filter).")
    warn(f"split not stratified: {problem}")
    return None
