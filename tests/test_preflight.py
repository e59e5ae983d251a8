"""`check_dataset`: every bad input is refused with a message naming the problem; good input is summarised."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mcp_trainer.errors import InvalidInputError
from mcp_trainer.preflight import readers
from mcp_trainer.preflight.readers import MAX_COLUMNS, MAX_LINE_CHARS, ParquetReader
from mcp_trainer.preflight.tabular import DatasetSummary, check_dataset, min_rows_for
from mcp_trainer.specs.tabular import TabularSpec

MakeCsv = Callable[[str, list[str], list[list[object]]], Path]


def spec_for(path: Path | str, **overrides: Any) -> TabularSpec:
    return TabularSpec.model_validate(
        {
            "task_type": "svm_classification",
            "data_source": str(path),
            "target_column": "label",
            **overrides,
        }
    )


def refusal(spec: TabularSpec) -> InvalidInputError:
    with pytest.raises(InvalidInputError) as info:
        check_dataset(spec)
    return info.value


def two_class_rows(n: int) -> list[list[object]]:
    return [[i, i * 0.5, "ab"[i % 2]] for i in range(n)]


def test_a_missing_file_is_refused_as_not_existing(tmp_path: Path) -> None:
    err = refusal(spec_for(tmp_path / "nowhere.csv"))
    assert "does not exist" in err.message
    assert "nowhere.csv" in err.message


def test_a_directory_is_refused_as_not_a_file(tmp_path: Path) -> None:
    folder = tmp_path / "data.csv"
    folder.mkdir()
    assert "is not a file" in refusal(spec_for(folder)).message


@pytest.mark.parametrize("name", ["data.txt", "data.xlsx", "data"])
def test_a_file_of_an_unsupported_format_is_refused_naming_the_suffix(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text("x,label\n1,a\n", encoding="utf-8")
    err = refusal(spec_for(path))
    assert "is not a supported format" in err.message
    assert f"suffix {path.suffix or 'none'}" in err.message
    assert err.hint is not None and ".csv" in err.hint and "sklearn:iris" in err.hint


def test_a_binary_file_with_a_csv_suffix_is_refused_as_binary(tmp_path: Path) -> None:
    path = tmp_path / "model.csv"
    path.write_bytes(b"PK\x03\x04\x00\x00binary zip content\x00\xff")
    assert "is binary" in refusal(spec_for(path)).message


def test_a_file_that_is_not_utf8_is_refused_naming_the_encoding(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("x,label\n1,caf\xe9\n2,th\xe9\n".encode("latin-1"))
    assert "not UTF-8" in refusal(spec_for(path)).message


def test_an_empty_file_is_refused_as_empty(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    assert "is empty" in refusal(spec_for(path)).message


def test_an_unknown_target_column_is_refused_listing_the_columns(blobs_csv: Path) -> None:
    err = refusal(spec_for(blobs_csv, target_column="colour"))
    assert "target_column 'colour' is not a column" in err.message
    assert err.hint is not None
    assert "x1, x2, shade, label" in err.hint


def test_an_unknown_feature_column_is_refused_listing_the_columns(blobs_csv: Path) -> None:
    err = refusal(spec_for(blobs_csv, feature_columns=["x1", "x9"]))
    assert "feature column 'x9' is not a column" in err.message
    assert err.hint is not None and "x1, x2, shade, label" in err.hint


def test_a_target_with_a_single_class_is_refused_naming_the_class(make_csv: MakeCsv) -> None:
    path = make_csv("one.csv", ["x", "label"], [[i, "only"] for i in range(30)])
    err = refusal(spec_for(path))
    assert "single class ('only')" in err.message


def test_too_few_rows_for_the_folds_is_refused_naming_counts(make_csv: MakeCsv) -> None:
    path = make_csv("few.csv", ["x", "y", "label"], two_class_rows(8))
    err = refusal(spec_for(path, cv_folds=5))
    assert "8 usable rows" in err.message
    assert "cv_folds=5" in err.message
    assert f"at least {min_rows_for(5)}" in err.message


def test_rows_missing_the_target_do_not_count_towards_the_minimum(make_csv: MakeCsv) -> None:
    rows = [*two_class_rows(10), [99, 1.0, ""], [98, 2.0, "NA"]]
    path = make_csv("holes.csv", ["x", "y", "label"], rows)
    assert check_dataset(spec_for(path, cv_folds=5)).rows == 10
    path = make_csv("holes2.csv", ["x", "y", "label"], [*two_class_rows(9), [99, 1.0, ""]])
    assert "9 usable rows" in refusal(spec_for(path, cv_folds=5)).message


def test_a_regression_target_with_text_is_refused_naming_an_example(make_csv: MakeCsv) -> None:
    rows: list[list[object]] = [[i, float(i)] for i in range(20)]
    rows.append([20, "twelve"])
    path = make_csv("reg.csv", ["x", "y"], rows)
    err = refusal(spec_for(path, task_type="svm_regression", target_column="y"))
    assert "target_column 'y' has non-numeric values such as 'twelve'" in err.message


@pytest.mark.parametrize("n_rows", [300, 401, 450, 2000])
def test_a_free_text_feature_with_many_distinct_values_is_refused(make_csv: MakeCsv, n_rows: int) -> None:
    rows: list[list[object]] = [[i, f"comment number {i}", "ab"[i % 2]] for i in range(n_rows)]
    path = make_csv("text.csv", ["x", "comment", "label"], rows)
    err = refusal(spec_for(path))
    assert "Feature column 'comment' is text with more than 200 distinct values" in err.message
    assert "free text" in err.message


def test_a_text_feature_with_few_categories_is_accepted_as_categorical(make_csv: MakeCsv) -> None:
    rows: list[list[object]] = [[i, f"city{i % 7}", "ab"[i % 2]] for i in range(500)]
    path = make_csv("cities.csv", ["x", "city", "label"], rows)
    assert check_dataset(spec_for(path)).categorical == ["city"]


def test_a_row_with_the_wrong_number_of_fields_is_refused_naming_the_line(tmp_path: Path) -> None:
    lines = ["x,y,label"] + [f"{i},{i},{'ab'[i % 2]}" for i in range(20)]
    lines[5] = "5,5,b,extra"  # file line 6
    path = tmp_path / "ragged.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    err = refusal(spec_for(path))
    assert "Line 6 of the CSV has 4 fields but the header has 3" in err.message


def test_the_line_named_for_a_ragged_row_counts_lines_inside_quoted_fields(tmp_path: Path) -> None:
    lines = ["x,note,label", '1,"two\nlines",a'] + [f"{i},n,{'ab'[i % 2]}" for i in range(20)]
    lines[6] = "5,n,b,extra"  # file line 8: the quoted field above spans two lines
    path = tmp_path / "ragged.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    err = refusal(spec_for(path, feature_columns=["x"]))
    assert "Line 8 of the CSV" in err.message


def test_missing_values_with_missing_values_error_are_refused_naming_the_columns(make_csv: MakeCsv) -> None:
    rows = two_class_rows(20)
    rows[3][0] = ""
    rows[7][1] = "NaN"
    path = make_csv("gaps.csv", ["x", "y", "label"], rows)
    err = refusal(spec_for(path, missing_values="error"))
    assert "Columns with missing values: ['x', 'y']" in err.message
    assert check_dataset(spec_for(path, missing_values="impute")).rows == 20


def test_a_feature_column_with_no_values_is_refused(make_csv: MakeCsv) -> None:
    rows: list[list[object]] = [[i, "", "ab"[i % 2]] for i in range(20)]
    path = make_csv("blank.csv", ["x", "blank", "label"], rows)
    assert "Feature column 'blank' has no values" in refusal(spec_for(path)).message


@pytest.mark.parametrize(("sep", "shown"), [(";", "';'"), ("\t", "'\\t'")])
def test_a_file_with_another_separator_is_refused_with_a_hint_naming_it(
    tmp_path: Path, sep: str, shown: str
) -> None:
    lines = [sep.join(["x", "y", "label"])] + [sep.join([str(i), str(i), "ab"[i % 2]]) for i in range(20)]
    path = tmp_path / "semi.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    err = refusal(spec_for(path))
    assert "has only one column" in err.message
    assert err.hint is not None
    assert f"separated by {shown}" in err.hint


def test_a_file_that_starts_with_a_comment_line_is_refused_with_a_hint_to_remove_it(tmp_path: Path) -> None:
    # As matplotlib's sample Stocks.csv starts: a comment, then the header.
    lines = ["# Data source: https://finance.yahoo.com", "x,y,label"] + [
        f"{i},{i},{'ab'[i % 2]}" for i in range(20)
    ]
    path = tmp_path / "stocks.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    err = refusal(spec_for(path))
    assert "has only one column" in err.message
    assert (
        err.hint is not None and "looks like a comment" in err.hint and "remove the comment lines" in err.hint
    )


def test_repeated_column_names_are_refused_naming_them(make_csv: MakeCsv) -> None:
    path = make_csv("dupes.csv", ["x", "x", "label"], two_class_rows(20))
    assert "Column names repeat in the header: ['x']" in refusal(spec_for(path)).message


def test_good_classification_data_is_summarised(blobs_csv: Path) -> None:
    summary = check_dataset(spec_for(blobs_csv, cv_folds=3))
    assert summary == DatasetSummary(
        rows=120,
        features=["x1", "x2", "shade"],
        categorical=["shade"],
        classes=["blue", "green", "red"],
    )


def test_good_multi_target_regression_data_is_summarised_without_classes(regression_csv: Path) -> None:
    spec = spec_for(regression_csv, task_type="svm_regression", target_column=["y1", "y2"])
    assert check_dataset(spec) == DatasetSummary(rows=100, features=["a", "b"], categorical=[], classes=None)


def test_chosen_feature_columns_are_the_only_features(blobs_csv: Path) -> None:
    summary = check_dataset(spec_for(blobs_csv, feature_columns=["x2", "shade"]))
    assert summary.features == ["x2", "shade"]
    assert summary.categorical == ["shade"]


def test_a_utf8_bom_and_padded_header_names_are_accepted(tmp_path: Path) -> None:
    lines = ["\ufeff x , label "] + [f"{i},{'ab'[i % 2]}" for i in range(20)]
    path = tmp_path / "bom.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert check_dataset(spec_for(path)).features == ["x"]


def test_without_data_validation_only_the_header_is_checked(make_csv: MakeCsv) -> None:
    path = make_csv("tiny.csv", ["x", "label"], [[1, "a"]])
    summary = check_dataset(spec_for(path, validate_data=False))
    assert summary == DatasetSummary(rows=-1, features=["x"], categorical=[], classes=None)


@pytest.mark.parametrize(
    ("task_type", "suggested"),
    [("svm_classification", "svm_regression"), ("logistic_regression", "ridge_regression")],
)
def test_classification_on_a_continuous_target_is_refused_naming_a_regression_type(
    make_csv: MakeCsv, task_type: str, suggested: str
) -> None:
    rows: list[list[object]] = [[i, round(0.37 * i + 1.05, 3)] for i in range(40)]
    path = make_csv("prices.csv", ["size", "price"], rows)
    err = refusal(spec_for(path, task_type=task_type, target_column="price"))
    assert "holds continuous numbers (such as '1.05')" in err.message
    assert err.hint is not None and suggested in err.hint


def test_a_whole_number_target_is_still_a_classification_target(make_csv: MakeCsv) -> None:
    rows: list[list[object]] = [[i, float(i % 3)] for i in range(40)]  # 0.0, 1.0, 2.0: classes
    path = make_csv("classes.csv", ["x", "label"], rows)
    summary = check_dataset(spec_for(path))
    assert summary.classes == ["0.0", "1.0", "2.0"]


def test_a_file_with_more_columns_than_supported_is_refused_from_its_header(tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    path.write_text(",".join(f"c{i}" for i in range(MAX_COLUMNS + 1)) + ",label\n", encoding="utf-8")
    assert f"at most {MAX_COLUMNS:,} are supported" in refusal(spec_for(path)).message


def test_a_line_longer_than_the_limit_is_refused_without_reading_it_whole(tmp_path: Path) -> None:
    path = tmp_path / "one_line.csv"
    path.write_text("a,label\n" + "1" * (MAX_LINE_CHARS + 10), encoding="utf-8")
    assert "Line 2 of the data is longer than" in refusal(spec_for(path)).message


def test_only_a_sample_is_read_and_what_only_the_whole_file_proves_is_left_to_the_worker(
    make_csv: MakeCsv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(readers, "SAMPLE_ROWS", 40)
    # Sorted by class, with a column empty in the first rows: the sample sees one class and no values,
    # which the whole file contradicts. Not refused: the worker reads the whole file and decides.
    rows = [[i, "", "a"] for i in range(60)] + [[i, 1.5, "b"] for i in range(60)]
    summary = check_dataset(spec_for(make_csv("sorted.csv", ["x", "z", "label"], rows)))
    assert summary.rows == 40
    # What the sample does prove is still refused: a regression target with text.
    texty = [[i, 0.5, "tall" if i == 3 else i] for i in range(120)]
    err = refusal(
        spec_for(
            make_csv("texty.csv", ["x", "z", "y"], texty), task_type="ridge_regression", target_column="y"
        )
    )
    assert "non-numeric values such as 'tall'" in err.message


def test_a_parquet_file_is_checked_from_its_metadata_and_first_batches_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(readers, "SAMPLE_ROWS", 2048)
    n = 2_000_000  # written in one column chunk; decoding it all would take seconds and ~100 MB
    frame = pd.DataFrame({"x": np.zeros(n), "label": np.arange(n) % 2})
    path = tmp_path / "many.parquet"
    frame.to_parquet(path)
    summary = check_dataset(spec_for(path))
    assert summary.rows == 2048
    assert ParquetReader(path, read_rows=False).num_rows == n
