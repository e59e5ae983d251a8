"""What a caller asks of a `preprocess` task: a data file turned into a new one that a later task reads.

The operations run in a fixed order, each on what the one before left: drop_columns, filter, impute,
encode, sample, split. Row conditions are data (a column, an operator, a value), never code. Light on
purpose (pydantic only): the server validates these; the worker applies them (trainers/preprocess/).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictStr, model_validator

from mcp_trainer.specs.sources import BUNDLED, BUNDLED_PREFIX, PathText

__all__ = ["OPERATIONS", "ORDERING_OPS", "PreprocessSpec", "RowCondition"]

# The operations, in the order they run (also the phases a running task reports).
OPERATIONS = ("drop_columns", "filter", "impute", "encode", "sample", "split")
ORDERING_OPS = ("<", "<=", ">", ">=")  # compare numbers only
_NO_VALUE_OPS = ("is_missing", "not_missing")
_LIST_OPS = ("in", "not_in")

Scalar = StrictFloat | StrictStr  # a number (whole numbers too, as floats) or a text; never a bool
Column = Annotated[str, Field(min_length=1, max_length=1000)]


class RowCondition(BaseModel):
    """Keep the rows where `column op value` holds (a missing value never satisfies a comparison)."""

    model_config = ConfigDict(extra="forbid")

    column: Column
    op: Literal["==", "!=", "<", "<=", ">", ">=", "in", "not_in", "is_missing", "not_missing"]
    value: Scalar | Annotated[list[Scalar], Field(min_length=1, max_length=1000)] | None = None

    @model_validator(mode="after")
    def _value_fits_op(self) -> RowCondition:
        if self.op in _NO_VALUE_OPS:
            if self.value is not None:
                raise ValueError(f"op {self.op!r} takes no value; leave value out")
        elif self.op in _LIST_OPS:
            if not isinstance(self.value, list):
                raise ValueError(f"op {self.op!r} needs a list of values, e.g. ['a', 'b']")
        elif self.value is None or isinstance(self.value, list):
            raise ValueError(f"op {self.op!r} needs one value (a number or a text)")
        elif self.op in ORDERING_OPS and not isinstance(self.value, float):
            raise ValueError(f"op {self.op!r} compares numbers; give a number as value (got {self.value!r})")
        return self

    def describe(self) -> str:
        return f"{self.column} {self.op}" + ("" if self.value is None else f" {self.value!r}")


class PreprocessSpec(BaseModel):
    """Drop columns, filter rows, impute, encode, sample and split a data file into new files (under
    the queue's `datasets/<task_id>/`) that later tasks read. Outputs: `output_path` (the whole result,
    or with a split its training part), `train_path` and `test_path` with a split, `n_rows` (rows
    written in all), `n_train_rows` and `n_test_rows` with a split, `columns` (of the files written, the
    first 500) and `n_columns`. No model is made.

    Every field is a parameter of the `submit_preprocess_task` tool, whose schema is generated from it."""

    model_config = ConfigDict(extra="forbid")

    task_type: Literal["preprocess"] = Field(description="Always 'preprocess'.")
    data_source: PathText = Field(
        description="Absolute path of a .csv, .tsv, .jsonl or .parquet file, or sklearn:<name>."
    )
    target_column: Column | None = Field(
        default=None,
        description="The column to predict: never imputed or encoded; split stratifies on it.",
    )
    drop_columns: list[Column] = Field(default_factory=list, description="1. Columns to remove.")
    filter: list[RowCondition] = Field(
        default_factory=list,
        description="2. Keep rows meeting every condition: {column, op, value}; op ==, !=, <, <=, >, >= "
        "(numbers), in, not_in (a list), is_missing, not_missing (no value).",
    )
    impute_numeric: Literal["mean", "median", "constant"] | None = Field(
        default=None, description="3. Fill missing numbers (not the target)."
    )
    impute_categorical: Literal["most_frequent", "constant"] | None = Field(
        default=None, description="3. Fill missing text values (not the target)."
    )
    fill_value_numeric: StrictFloat | None = Field(
        default=None, description="The number impute_numeric='constant' fills in."
    )
    fill_value_categorical: StrictStr | None = Field(
        default=None, description="The text impute_categorical='constant' fills in."
    )
    encode: Literal["one_hot", "ordinal"] | None = Field(
        default=None,
        description="4. Text columns (not the target) as numbers: one_hot (a 0/1 column per value, "
        "'<col>_<value>') or ordinal (codes of the sorted values).",
    )
    encode_columns: list[Column] | None = Field(
        default=None, description="Columns to encode; default every text column but dates and the target."
    )
    sample_n: Annotated[int, Field(ge=1, le=100_000_000)] | None = Field(
        default=None, description="5. Keep this many random rows."
    )
    sample_fraction: Annotated[float, Field(gt=0.0, lt=1.0)] | None = Field(
        default=None, description="5. Or keep this share of the rows."
    )
    test_size: Annotated[float, Field(gt=0.0, lt=1.0)] | None = Field(
        default=None, description="6. Split: the share of rows in test; omit for no split."
    )
    stratify: bool | None = Field(
        default=None,
        description="Keep the target's class shares in both parts; default on for a target of classes.",
    )
    random_state: Annotated[int, Field(ge=0, le=2**32 - 1)] = Field(
        default=42, description="Seed of sample and split."
    )
    output_format: Literal["csv", "parquet"] = Field(
        default="csv", description="Format of the files written."
    )

    @property
    def operations(self) -> list[str]:
        """The operations this spec asks for, in the order they run."""
        asked = {
            "drop_columns": bool(self.drop_columns),
            "filter": bool(self.filter),
            "impute": self.impute_numeric is not None or self.impute_categorical is not None,
            "encode": self.encode is not None,
            "sample": self.sample_n is not None or self.sample_fraction is not None,
            "split": self.test_size is not None,
        }
        return [op for op in OPERATIONS if asked[op]]

    @model_validator(mode="before")
    @classmethod
    def _bundled_target(cls, data: Any) -> Any:
        """A bundled dataset knows what it predicts (a single target only: that is what split uses)."""
        if isinstance(data, dict) and data.get("target_column") is None:
            source = data.get("data_source")
            if isinstance(source, str) and source.startswith(BUNDLED_PREFIX):
                bundled = BUNDLED.get(source.removeprefix(BUNDLED_PREFIX))
                if bundled is not None and len(bundled.targets) == 1:
                    return {**data, "target_column": bundled.targets[0]}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> PreprocessSpec:
        for name in ("drop_columns", "encode_columns"):
            names = getattr(self, name) or []
            if len(set(names)) != len(names):
                raise ValueError(f"{name} names a column twice")
            if self.target_column is not None and self.target_column in names:
                raise ValueError(
                    f"{name} includes the target {self.target_column!r}; the target is kept as it is"
                )
        if self.encode_columns is not None and self.encode is None:
            raise ValueError("encode_columns needs encode ('one_hot' or 'ordinal')")
        if self.encode_columns == []:
            raise ValueError("encode_columns is empty; leave it out to encode every text column")
        _check_fill("numeric", self.impute_numeric, self.fill_value_numeric)
        _check_fill("categorical", self.impute_categorical, self.fill_value_categorical)
        if self.sample_n is not None and self.sample_fraction is not None:
            raise ValueError("give sample_n or sample_fraction, not both")
        if self.stratify is not None and self.test_size is None:
            raise ValueError("stratify applies to a split: give test_size too")
        if self.stratify and self.target_column is None:
            raise ValueError("stratify needs target_column: the column whose classes both parts keep")
        return self

    def outputs(self) -> frozenset[str]:
        """The named outputs its result holds (a later pipeline stage may refer to them)."""
        made = frozenset({"output_path", "n_rows", "columns", "n_columns"})
        if self.test_size is None:
            return made
        return made | {"train_path", "test_path", "n_train_rows", "n_test_rows"}


def _check_fill(kind: str, strategy: str | None, value: object) -> None:
    if strategy == "constant" and value is None:
        raise ValueError(f"impute_{kind}='constant' needs fill_value_{kind}")
    if value is not None and strategy != "constant":
        raise ValueError(
            f"fill_value_{kind} is used by impute_{kind}='constant' only; set that, or leave it out"
        )
