"""TabularSpec validation, and the readable messages `describe_validation_error` makes of its failures."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from mcp_trainer.errors import InvalidInputError, TrainerError, describe_validation_error
from mcp_trainer.specs.tabular import TabularSpec


def spec_dict(**overrides: Any) -> dict[str, Any]:
    return {
        "task_type": "svm_classification",
        "data_source": "/data/x.csv",
        "target_column": "label",
        **overrides,
    }


def validation_message(**overrides: Any) -> str:
    with pytest.raises(ValidationError) as info:
        TabularSpec.model_validate(spec_dict(**overrides))
    return describe_validation_error(info.value, TabularSpec.model_fields)


def test_a_minimal_classification_spec_is_valid_with_defaults() -> None:
    spec = TabularSpec.model_validate(spec_dict())
    assert spec.is_classification
    assert spec.targets == ["label"]
    assert spec.effective_scoring == "accuracy"
    assert (spec.n_trials, spec.cv_folds, spec.missing_values) == (50, 5, "impute")


def test_regression_accepts_several_targets_and_epsilon() -> None:
    spec = TabularSpec.model_validate(
        spec_dict(task_type="svm_regression", target_column=["y1", "y2"], epsilon=0.1, scoring="r2")
    )
    assert not spec.is_classification
    assert spec.targets == ["y1", "y2"]
    assert spec.effective_scoring == "r2"


def test_classification_with_several_targets_is_rejected_naming_the_target_column() -> None:
    message = validation_message(target_column=["a", "b"])
    assert "one target column" in message
    assert "regression task types" in message


def test_a_single_target_in_a_list_is_accepted_for_classification() -> None:
    assert TabularSpec.model_validate(spec_dict(target_column=["label"])).targets == ["label"]


def test_epsilon_on_classification_is_rejected_naming_epsilon() -> None:
    message = validation_message(epsilon=0.1)
    assert "epsilon" in message
    assert "regression only" in message


@pytest.mark.parametrize(
    ("task_type", "scoring"),
    [("svm_classification", "r2"), ("svm_regression", "accuracy"), ("svm_classification", "best")],
)
def test_a_scoring_unknown_for_the_task_type_is_rejected_naming_scoring(task_type: str, scoring: str) -> None:
    message = validation_message(task_type=task_type, scoring=scoring)
    assert f"scoring {scoring!r} is not one of" in message
    assert task_type in message


def test_feature_columns_containing_the_target_are_rejected_naming_both() -> None:
    message = validation_message(feature_columns=["x1", "label"])
    assert "feature_columns include the target" in message
    assert "label" in message


def test_empty_feature_columns_are_rejected_naming_feature_columns() -> None:
    assert "feature_columns is empty" in validation_message(feature_columns=[])


@pytest.mark.parametrize(
    ("field", "value", "bound"),
    [
        ("n_trials", 0, "must be at least 1"),
        ("n_trials", 1001, "must be at most 1000"),
        ("cv_folds", 1, "must be at least 2"),
        ("cv_folds", 21, "must be at most 20"),
    ],
)
def test_n_trials_and_cv_folds_out_of_bounds_are_rejected_naming_the_field_bound_and_value(
    field: str, value: int, bound: str
) -> None:
    message = validation_message(**{field: value})
    assert message == f"{field} {bound} (got {value})"


def test_an_unknown_extra_parameter_is_rejected_naming_the_known_ones() -> None:
    message = validation_message(learning_rate=0.1)
    assert message.startswith("unknown parameter 'learning_rate' (known: C, cv_folds, data_source,")


def test_a_misspelt_parameter_is_rejected_naming_the_closest_valid_one() -> None:
    message = validation_message(n_trails=5, cv_fold=3)
    assert "unknown parameter 'n_trails' (did you mean 'n_trials'?)" in message
    assert "unknown parameter 'cv_fold' (did you mean 'cv_folds'?)" in message


def test_an_unknown_task_type_lists_the_known_ones_and_the_closest() -> None:
    message = validation_message(task_type="svm_clasification")
    assert message.startswith("task_type must be one of ")
    assert "'svm_classification'" in message
    assert "'svm_regression'" in message
    assert "(got 'svm_clasification', did you mean 'svm_classification'?)" in message


def test_a_missing_required_field_is_named_without_a_got_clause() -> None:
    with pytest.raises(ValidationError) as info:
        TabularSpec.model_validate({"task_type": "svm_regression", "target_column": "y"})
    assert describe_validation_error(info.value) == "data_source is required"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"n_trials": "five"}, "n_trials must be a whole number (got 'five')"),
        ({"test_size": 0}, "test_size must be greater than 0.0 (got 0)"),
        ({"scale_features": "maybe"}, "scale_features must be true or false (got 'maybe')"),
        ({"gamma": "big"}, "gamma must be a number or one of 'scale', 'auto' (got 'big')"),
        ({"feature_columns": "x1"}, "feature_columns must be a list (got 'x1')"),
    ],
)
def test_type_errors_read_as_sentences_without_pydantic_wording(
    overrides: dict[str, Any], expected: str
) -> None:
    message = validation_message(**overrides)
    assert message == expected
    for pydantic_words in ("Input should", "validation error", "errors.pydantic.dev", "[type="):
        assert pydantic_words not in message


@pytest.mark.parametrize("targets", [[], ["y", "y"], ["y", ""]])
def test_empty_or_repeated_target_names_are_rejected_naming_target_column(targets: list[str]) -> None:
    message = validation_message(task_type="svm_regression", target_column=targets)
    assert message.startswith("target_column: ")


def test_several_problems_are_each_described_once() -> None:
    message = validation_message(n_trials=0, cv_folds=99, extra_knob=True)
    parts = message.split("; ")
    assert len(parts) == 3
    assert {p.split(" ")[0] for p in parts} == {"n_trials", "cv_folds", "unknown"}
    assert "'extra_knob'" in parts[-1]


def test_trainer_errors_read_as_message_then_hint() -> None:
    err = InvalidInputError("The file is missing.", "Pass another path.")
    assert isinstance(err, TrainerError)
    assert str(err) == "The file is missing. Pass another path."
    assert str(InvalidInputError("Only a message.")) == "Only a message."
