"""Reading data files in the server process, with the standard library only (the server stays light).

The worker reads the same files with pandas using `NA_VALUES` and `ENCODING` from here, so both sides
agree on what is missing and what is numeric. Each reader yields rows as lists of strings, the header
first.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

from mcp_trainer.errors import InvalidInputError

__all__ = ["ENCODING", "NA_VALUES", "JsonLinesReader", "ParquetReader", "Reader", "check_file", "text_rows"]

ENCODING = "utf-8-sig"
NA_VALUES = frozenset(
    {"", "NA", "N/A", "n/a", "NaN", "nan", "NULL", "null", "None", "none", "?", "#N/A", "-"}
)
_SNIFF_BYTES = 8192


class Reader(Protocol):
    line_num: int

    def __iter__(self) -> Iterator[list[str]]: ...

    def __next__(self) -> list[str]: ...


def check_file(path: Path, *, text: bool) -> None:
    if not path.exists():
        raise InvalidInputError(
            f"data_source {str(path)!r} does not exist.",
            "Pass the absolute path of a data file on the machine that runs the server.",
        )
    if not path.is_file():
        raise InvalidInputError(f"data_source {str(path)!r} is not a file.", "Pass the path of a data file.")
    if not os.access(path, os.R_OK):
        raise InvalidInputError(
            f"data_source {str(path)!r} is not readable by the server.", "Fix the file's permissions."
        )
    if not text:
        return
    with open(path, "rb") as f:
        head = f.read(_SNIFF_BYTES)
    if b"\x00" in head:
        raise InvalidInputError(
            f"data_source {str(path)!r} is binary, not text.",
            "Export the data as UTF-8 CSV, TSV or JSON lines.",
        )
    try:
        head.decode(ENCODING)
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # a multi-byte character cut by the sniff window is fine
            raise InvalidInputError(
                f"data_source {str(path)!r} is not UTF-8 text.", "Re-save the file with UTF-8 encoding."
            ) from None


class JsonLinesReader:
    """Rows of a JSON-lines file as lists of strings, the first being the header (the first object's keys)."""

    def __init__(self, lines: Iterable[str]) -> None:
        self._lines = iter(lines)
        self._keys: list[str] | None = None
        self._stash: list[str] | None = None  # the first object's values, returned after the header
        self.line_num = 0

    def __iter__(self) -> Iterator[list[str]]:
        return self

    def __next__(self) -> list[str]:
        if self._stash is not None:
            row, self._stash = self._stash, None
            return row
        for raw in self._lines:
            self.line_num += 1
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise InvalidInputError(
                    f"Line {self.line_num} is not valid JSON: {exc.msg}.",
                    "Each line must hold one JSON object.",
                ) from None
            if not isinstance(obj, dict):
                raise InvalidInputError(
                    f"Line {self.line_num} is not a JSON object.",
                    "Each line must hold one object of column values.",
                )
            if self._keys is None:
                self._keys = [str(k) for k in obj]
                self._stash = self._row(obj)
                return list(self._keys)
            return self._row(obj)
        raise StopIteration

    def _row(self, obj: dict[str, Any]) -> list[str]:
        assert self._keys is not None
        extra = set(obj) - set(self._keys)
        if extra:
            raise InvalidInputError(
                f"Line {self.line_num} has columns the first line lacks: {sorted(extra)}.",
                "Give every line the same keys (null for a missing value).",
            )
        values: list[str] = []
        for key in self._keys:
            v = obj.get(key)
            if isinstance(v, dict | list):
                raise InvalidInputError(
                    f"Line {self.line_num}: column {key!r} holds a nested value.",
                    "Flatten it into plain columns.",
                )
            values.append("" if v is None else str(v))
        return values


class ParquetReader:
    """Rows of a Parquet file as lists of strings (header first), read with pyarrow."""

    def __init__(self, path: Path, *, read_rows: bool) -> None:
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise InvalidInputError(
                "Reading Parquet needs pyarrow, which is not installed.",
                "Install it with: pip install 'mcp-trainer[parquet]'.",
            ) from None
        try:
            self._table = pq.read_table(path) if read_rows else None
            names = list(pq.read_schema(path).names)
        except Exception as exc:  # pyarrow raises several types for a damaged file
            raise InvalidInputError(
                f"data_source {str(path)!r} is not a readable Parquet file: {exc}."
            ) from None
        self._rows: Iterator[list[str]] = iter([names])
        if self._table is not None:
            columns = [self._table.column(n).to_pylist() for n in names]
            body = ([("" if v is None else str(v)) for v in row] for row in zip(*columns, strict=True))
            self._rows = itertools.chain(self._rows, body)
        self.line_num = 0

    def __iter__(self) -> Iterator[list[str]]:
        return self

    def __next__(self) -> list[str]:
        self.line_num += 1
        return next(self._rows)


def text_rows(path: Path, fmt: str) -> Iterator[list[str]]:
    """Rows of a CSV, TSV or JSON-lines file, header first."""
    with open(path, newline="", encoding=ENCODING) as f:
        if fmt == "jsonl":
            yield from JsonLinesReader(f)
        else:
            yield from csv.reader(f, delimiter="\t" if fmt == "tsv" else ",")
