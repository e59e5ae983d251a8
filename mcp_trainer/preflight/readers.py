"""Reading data files in the server process, with the standard library only (the server stays light).

The worker reads the same files with pandas using `NA_VALUES` and `ENCODING` from here, so both sides
agree on what is missing and what is numeric. Each reader yields rows as lists of strings, the header
first.

The server never reads a whole file: a check reads a `Sample`, the first rows up to SAMPLE_ROWS rows,
SAMPLE_CELLS values and SAMPLE_CHARS characters, with no line longer than MAX_LINE_CHARS and no more
than MAX_COLUMNS columns. (A 711 KB Parquet file can declare 100 million rows; a 4.7 MB CSV can hold
100,000 columns.) What only the whole file can tell (a single class, an empty column) is left to the
worker when the sample is not the whole file.
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import json
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol, TextIO

from mcp_trainer.errors import InvalidInputError

__all__ = [
    "ENCODING",
    "MAX_COLUMNS",
    "MAX_LINE_CHARS",
    "NA_VALUES",
    "SAMPLE_ROWS",
    "JsonLinesReader",
    "LineReader",
    "ParquetReader",
    "Reader",
    "Sample",
    "check_file",
    "check_header_size",
    "header_names",
    "read_header",
    "text_errors",
    "text_rows",
]

ENCODING = "utf-8-sig"
NA_VALUES = frozenset(
    {"", "NA", "N/A", "n/a", "NaN", "nan", "NULL", "null", "None", "none", "?", "#N/A", "-"}
)
_SNIFF_BYTES = 8192
MAX_COLUMNS = 50_000
MAX_LINE_CHARS = 8 << 20
SAMPLE_CHARS = 32 << 20
SAMPLE_CELLS = 1_000_000
SAMPLE_ROWS = 200_000


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


class LineReader:
    """The lines of a text file, refusing one longer than MAX_LINE_CHARS (a file with no line breaks
    would otherwise be read whole), and counting the characters read."""

    def __init__(self, f: TextIO) -> None:
        self._f = f
        self.chars = 0
        self.line_num = 0

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        line = self._f.readline(MAX_LINE_CHARS + 1)
        if not line:
            raise StopIteration
        self.line_num += 1
        if len(line) > MAX_LINE_CHARS:
            raise InvalidInputError(
                f"Line {self.line_num} of the data is longer than {MAX_LINE_CHARS >> 20} MiB.",
                "Check that the file is CSV, TSV or JSON lines with one row per line.",
            )
        self.chars += len(line)
        return line


class Sample:
    """The rows of `reader` (the header already taken) up to SAMPLE_ROWS rows, SAMPLE_CELLS values and
    SAMPLE_CHARS characters (`chars()` says how many were read). After iterating, `complete` says
    whether they were all the rows of the file."""

    def __init__(self, reader: Reader, chars: Callable[[], int] = lambda: 0) -> None:
        self._reader = reader
        self._chars = chars
        self.cells = 0
        self.complete = True

    @property
    def line_num(self) -> int:
        return self._reader.line_num

    def __iter__(self) -> Iterator[list[str]]:
        for rows, row in enumerate(self._reader, start=1):
            yield row
            self.cells += len(row)
            if rows >= SAMPLE_ROWS or self.cells >= SAMPLE_CELLS or self._chars() >= SAMPLE_CHARS:
                self.complete = next(self._reader, None) is None
                return


def check_header_size(header: list[str], path: Path) -> None:
    if len(header) > MAX_COLUMNS:
        raise InvalidInputError(
            f"data_source {str(path)!r} has {len(header):,} columns; at most {MAX_COLUMNS:,} are supported.",
            "Keep the columns the model needs in a new file.",
        )


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
    """Rows of a Parquet file as lists of strings (header first), read with pyarrow a batch at a time:
    the file's metadata says how large it is, and nothing past the rows asked for is decoded."""

    def __init__(self, path: Path, *, read_rows: bool) -> None:
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise InvalidInputError(
                "Reading Parquet needs pyarrow, which is not installed.",
                "Install it with: pip install 'mcp-trainer[parquet]'.",
            ) from None
        try:
            self._file = pq.ParquetFile(path)
            names = list(self._file.schema_arrow.names)
        except Exception as exc:  # pyarrow raises several types for a damaged file
            raise InvalidInputError(
                f"data_source {str(path)!r} is not a readable Parquet file: {str(exc)[:200]}."
            ) from None
        check_header_size(names, path)
        self.num_rows = int(self._file.metadata.num_rows)
        self._rows: Iterator[list[str]] = iter([names])
        if read_rows:
            self._rows = itertools.chain(self._rows, self._body(path))
        self.line_num = 0

    def _body(self, path: Path) -> Iterator[list[str]]:
        try:
            for batch in self._file.iter_batches(batch_size=1024):
                columns = [column.to_pylist() for column in batch.columns]
                yield from (
                    [("" if v is None else str(v)) for v in row] for row in zip(*columns, strict=True)
                )
        except InvalidInputError:
            raise
        except Exception as exc:
            raise InvalidInputError(
                f"data_source {str(path)!r} is not a readable Parquet file: {str(exc)[:200]}."
            ) from None

    def __iter__(self) -> Iterator[list[str]]:
        return self

    def __next__(self) -> list[str]:
        self.line_num += 1
        return next(self._rows)


@contextlib.contextmanager
def text_rows(path: Path, fmt: str) -> Iterator[tuple[Reader, LineReader]]:
    """A reader of the rows of a CSV, TSV or JSON-lines file (header first), and its lines (which count
    the characters read)."""
    with open(path, newline="", encoding=ENCODING) as f:
        lines = LineReader(f)
        reader: Reader = (
            JsonLinesReader(lines)
            if fmt == "jsonl"
            else csv.reader(lines, delimiter="\t" if fmt == "tsv" else ",")
        )
        yield reader, lines


def header_names(header: list[str] | None, path: Path) -> list[str]:
    """A header row's column names, stripped, once it is there, not blank and not oversized; raises
    InvalidInputError naming the problem."""
    if header is None or not any(h.strip() for h in header):
        raise InvalidInputError(
            f"data_source {str(path)!r} is empty.", "Give a file with a header (column names) and data rows."
        )
    check_header_size(header, path)
    return [h.strip() for h in header]


def read_header(path: Path, fmt: str) -> list[str]:
    """The column names of a data file (stripped; checked for size, emptiness and repeats), reading no
    further than its header. Raises InvalidInputError naming the problem."""
    with text_errors(path):
        if fmt == "parquet":
            header = next(ParquetReader(path, read_rows=False), None)
        else:
            with text_rows(path, fmt) as (reader, _):
                header = next(reader, None)
    names = header_names(header, path)
    repeated = sorted(name for name, times in Counter(names).items() if times > 1)
    if repeated:
        raise InvalidInputError(
            f"Column names repeat in the header: {repeated}.", "Give every column its own name."
        )
    return names


@contextlib.contextmanager
def text_errors(path: Path) -> Iterator[None]:
    """Say in words that a text data file is not UTF-8, or not valid CSV, where reading it found so."""
    try:
        yield
    except UnicodeDecodeError:
        raise InvalidInputError(
            f"data_source {str(path)!r} is not UTF-8 text.", "Re-save the file with UTF-8 encoding."
        ) from None
    except csv.Error as exc:
        raise InvalidInputError(
            f"data_source {str(path)!r} is not valid CSV: {exc}.", "Check quoting around that line."
        ) from None
