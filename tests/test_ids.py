"""Task and model ids: generated in the checked format, derived from each other, malformed ones refused."""

from __future__ import annotations

import calendar
import re

import pytest

from mcp_trainer.errors import InvalidInputError
from mcp_trainer.ids import check_model_id, check_task_id, model_id_for, new_task_id


def test_a_new_task_id_has_the_documented_format_and_passes_the_check() -> None:
    task_id = new_task_id()
    assert re.fullmatch(r"task_\d{8}T\d{6}_[0-9a-f]{8}", task_id)
    assert check_task_id(task_id) == task_id


def test_a_new_task_id_stamps_the_utc_second_it_was_made() -> None:
    now = calendar.timegm((2026, 11, 22, 14, 30, 0, 0, 0, 0)) + 0.75
    assert new_task_id(now).startswith("task_20261122T143000_")


def test_new_task_ids_are_distinct_within_one_second() -> None:
    ids = {new_task_id(1_800_000_000.0) for _ in range(200)}
    assert len(ids) == 200


def test_task_ids_made_in_later_seconds_sort_later() -> None:
    assert new_task_id(1_800_000_000.0) < new_task_id(1_800_000_001.0)


def test_model_id_for_a_task_keeps_its_stamp_and_random_part() -> None:
    model_id = model_id_for("task_20261122T143000_8f3a2c1d")
    assert model_id == "model_20261122T143000_8f3a2c1d"
    assert check_model_id(model_id) == model_id


def test_model_id_for_is_the_same_every_time_for_one_task() -> None:
    task_id = new_task_id()
    assert model_id_for(task_id) == model_id_for(task_id)


MALFORMED_TASK_IDS: list[object] = [
    "../x",
    "task_../../etc",
    "task_20261122T143000_8f3a2c1d/../../x",
    "task_20261122T143000_8f3a2c1d\n",
    " task_20261122T143000_8f3a2c1d",
    "task_20261122T143000_8F3A2C1D",
    "task_20261122T143000_8f3a2c1",
    "task_2026112T143000_8f3a2c1d",
    "model_20261122T143000_8f3a2c1d",
    "",
    None,
    42,
    b"task_20261122T143000_8f3a2c1d",
]


@pytest.mark.parametrize("bad", MALFORMED_TASK_IDS, ids=repr)
def test_a_malformed_task_id_is_refused_with_an_example_of_the_format(bad: object) -> None:
    with pytest.raises(InvalidInputError) as info:
        check_task_id(bad)
    assert "is not a task id" in info.value.message
    assert info.value.hint is not None and "task_20261122T143000_8f3a2c1d" in info.value.hint


@pytest.mark.parametrize("bad", ["../x", "task_../../etc", "model_../x"])
def test_model_id_for_a_malformed_task_id_is_refused(bad: str) -> None:
    with pytest.raises(InvalidInputError):
        model_id_for(bad)


@pytest.mark.parametrize(
    "bad", ["task_20261122T143000_8f3a2c1d", "model_../x", "model_20261122T143000_8f3a2c1d/..", "", None]
)
def test_a_malformed_model_id_is_refused(bad: object) -> None:
    with pytest.raises(InvalidInputError, match="is not a model id"):
        check_model_id(bad)
