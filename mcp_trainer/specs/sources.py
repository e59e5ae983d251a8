"""What a `data_source` string names: a file in a supported format, or a dataset bundled with scikit-learn.

Light on purpose (no pandas, no scikit-learn): the server parses and checks sources before a task exists;
workers read them (trainers/tabular/data.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from mcp_trainer.errors import InvalidInputError

__all__ = ["BUNDLED", "FORMATS", "MAX_PATH_CHARS", "BundledDataset", "DataSource", "PathText", "parse_source"]

Format = Literal["csv", "tsv", "jsonl", "parquet", "bundled"]

FORMATS: dict[str, Format] = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
BUNDLED_PREFIX = "sklearn:"
MAX_PATH_CHARS = 4096  # PATH_MAX on Linux


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain a NUL character")
    return value


# A path a caller names: bounded, and free of the NUL byte no file system takes.
PathText = Annotated[str, Field(min_length=1, max_length=MAX_PATH_CHARS), AfterValidator(_no_nul)]


@dataclass(frozen=True)
class BundledDataset:
    """A dataset that ships inside scikit-learn (no download): what it predicts and its size."""

    loader: str  # the sklearn.datasets function
    kind: Literal["classification", "regression"]
    targets: tuple[str, ...]
    rows: int
    features: int


BUNDLED: dict[str, BundledDataset] = {
    "iris": BundledDataset("load_iris", "classification", ("target",), 150, 4),
    "wine": BundledDataset("load_wine", "classification", ("target",), 178, 13),
    "breast_cancer": BundledDataset("load_breast_cancer", "classification", ("target",), 569, 30),
    "digits": BundledDataset("load_digits", "classification", ("target",), 1797, 64),
    "diabetes": BundledDataset("load_diabetes", "regression", ("target",), 442, 10),
    "linnerud": BundledDataset("load_linnerud", "regression", ("Weight", "Waist", "Pulse"), 20, 3),
}


@dataclass(frozen=True)
class DataSource:
    format: Format
    path: Path | None = None  # for files
    name: str | None = None  # for bundled datasets

    @property
    def bundled(self) -> BundledDataset | None:
        return BUNDLED[self.name] if self.name is not None else None


def _formats_hint() -> str:
    suffixes = ", ".join(FORMATS)
    names = ", ".join(f"{BUNDLED_PREFIX}{n}" for n in BUNDLED)
    return f"Use a file ending in {suffixes}, or a bundled dataset: {names}."


def parse_source(data_source: str) -> DataSource:
    """Classify `data_source`; raises InvalidInputError for an unknown bundled name or file format."""
    if data_source.startswith(BUNDLED_PREFIX):
        name = data_source.removeprefix(BUNDLED_PREFIX)
        if name not in BUNDLED:
            raise InvalidInputError(f"{data_source!r} is not a bundled dataset.", _formats_hint())
        return DataSource("bundled", name=name)
    path = Path(data_source).expanduser()
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InvalidInputError(
            f"data_source {data_source!r} is not a supported format (suffix {path.suffix or 'none'}).",
            _formats_hint(),
        )
    return DataSource(fmt, path=path)
