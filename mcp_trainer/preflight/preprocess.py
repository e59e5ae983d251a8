"""Checks a preprocess task before it exists: every column it names is in the file (and not dropped before
it is used), number comparisons are on number columns, a stratified split has classes to keep
(standard library only: it runs in the server process, and reads a header and a sample, never a whole
file). A bundled dataset's columns are checked by the worker, which loads it."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

from mcp_trainer.errors import InvalidInputError
from mcp_trainer.preflight.readers import (
    NA_VALUES,
    ParquetReader,
    Sample,
    check_file,
    read_header,
    text_errors,
    text_rows,
)
from mcp_trainer.specs.preprocess import ORDERING_OPS, PreprocessSpec
from mcp_trainer.specs.sources import parse_source

__all__ = ["check_preprocess"]


def check_preprocess(spec: PreprocessSpec) -> None:
    """Raise InvalidInputError naming the first problem of `spec` against its data, and its fix."""
    if spec.output_format == "parquet" and importlib.util.find_spec("pyarrow") is None:
        raise InvalidInputError(
            "output_format='parquet' needs pyarrow, which is not installed.",
            "Install it with: pip install 'mcp-trainer[parquet]', or write CSV.",
        )
    source = parse_source(spec.data_source)
    if source.path is None:
        return
    path = source.path
    check_file(path, text=source.format != "parquet")
    header = read_header(path, source.format)
    _check_columns(header, spec, path)
    watched = _numbers_needed(spec)
    if not watched:
        return
    if source.format == "parquet":
        rows = ParquetReader(path, read_rows=True)
        next(rows)  # the header
        _check_values(Sample(rows), header, watched, spec)
        return
    with text_errors(path), text_rows(path, source.format) as (reader, lines):
        next(reader)
        _check_values(Sample(reader, lambda: lines.chars), header, watched, spec)


def _check_columns(header: list[str], spec: PreprocessSpec, path: Path) -> None:
    shown = ", ".join(header[:30]) + (" …" if len(header) > 30 else "")
    hint = f"Its columns are: {shown}."

    def need(name: str, what: str) -> None:
        if name in spec.drop_columns and what != "drop_columns":
            raise InvalidInputError(
                f"{what} names {name!r}, which drop_columns removes first (the operations run in the order "
                "drop_columns, filter, impute, encode, sample, split).",
                f"Take {name!r} out of drop_columns, or out of {what}.",
            )
        if name not in header:
            raise InvalidInputError(f"{what} {name!r} is not a column of {path.name}.", hint)

    if spec.target_column is not None:
        need(spec.target_column, "target_column")
    for name in spec.drop_columns:
        need(name, "drop_columns")
    if len(spec.drop_columns) >= len(header):
        raise InvalidInputError("drop_columns removes every column.", "Keep at least one column.")
    for condition in spec.filter:
        need(condition.column, "filter")
    for name in spec.encode_columns or []:
        need(name, "encode_columns")


def _numbers_needed(spec: PreprocessSpec) -> dict[str, str]:
    """Columns whose sampled values must be numbers (or must not be fractions), with what needs it."""
    watched = {c.column: f"filter {c.describe()}" for c in spec.filter if c.op in ORDERING_OPS}
    if spec.stratify and spec.target_column is not None:
        watched.setdefault(spec.target_column, "stratify")
    return watched


def _check_values(reader: Sample, header: list[str], watched: dict[str, str], spec: PreprocessSpec) -> None:
    """Refuse a number comparison on a column of text, and a stratified split on a continuous target, as
    far as the sample shows."""
    index = {name: header.index(name) for name in watched}
    for row in reader:
        for name, i in index.items():
            value = row[i].strip() if i < len(row) else ""
            if value in NA_VALUES:
                continue
            number = _number(value)
            if watched[name] == "stratify" and name == spec.target_column:
                if number is not None and not number.is_integer():
                    raise InvalidInputError(
                        f"stratify keeps the classes of target_column {name!r}, but it holds continuous "
                        f"numbers such as {value!r}.",
                        "Leave stratify out (a split of a continuous target is not stratified), or bin the "
                        "values into classes.",
                    )
            elif number is None:
                raise InvalidInputError(
                    f"{watched[name]}: column {name!r} holds text such as {value[:60]!r}; <, <=, > and >= "
                    "compare numbers.",
                    "Use == / != / in / not_in for text, or pick a column of numbers.",
                )


def _number(value: str) -> float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None
