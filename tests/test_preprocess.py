"""preprocess tasks: the spec's refusals, the checks at submit against the file, each operation on a small
frame (in memory), the trainer run in-process, and one task through the queue whose files a training
task then reads."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from mcp_trainer import InvalidInputError, TaskStatus, TrainingService
from mcp_trainer.artifacts.signing import ModelSigner
from mcp_trainer.ids import new_task_id
from mcp_trainer.records import ErrorKind, TaskRecord
from mcp_trainer.specs import parse_spec
from mcp_trainer.specs.preprocess import PreprocessSpec
from mcp_trainer.trainers.base import TaskFailure, WorkerContext
from mcp_trainer.trainers.preprocess import ops
from mcp_trainer.trainers.preprocess.trainer import PreprocessTrainer

pytestmark = pytest.mark.anyio
MakeCsv = Callable[[str, list[str], list[list[object]]], Path]


def spec(data: Path | str, **fields: Any) -> dict[str, Any]:
    return {"task_type": "preprocess", "data_source": str(data), **fields}


def parsed(**fields: Any) -> PreprocessSpec:
    result = parse_spec(spec("/data/x.csv", **fields))
    assert isinstance(result, PreprocessSpec)
    return result


@pytest.fixture
def people(make_csv: MakeCsv) -> Path:
    """20 people: age (one missing), city (text, one missing), income (a continuous number), a 0/1 target
    of two classes (10 each)."""
    rows: list[list[object]] = []
    for i in range(20):
        age = "" if i == 3 else 15 + i
        city = "" if i == 5 else ["paris", "lyon", "nice"][i % 3]
        rows.append([age, city, round(1000 + 37.5 * i, 2), i % 2])
    return make_csv("people.csv", ["age", "city", "income", "bought"], rows)


def run_in_process(record_spec: PreprocessSpec, tmp_path: Path) -> tuple[Any, WorkerContext]:
    """Run the trainer here, as a worker would, with its outputs under tmp_path."""
    record = TaskRecord(task_id=new_task_id(), spec=record_spec)
    ctx = WorkerContext(
        record=record,
        models_dir=tmp_path / "models",
        work_dir=tmp_path / "work",
        send=lambda _: None,
        stop_event=threading.Event(),
        signer=ModelSigner(tmp_path / "key"),
        output_dir=tmp_path / "datasets" / record.task_id,
    )
    return PreprocessTrainer().run(ctx), ctx


# -- the spec --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"sample_n": 5, "sample_fraction": 0.5}, "give sample_n or sample_fraction, not both"),
        ({"fill_value_numeric": 0}, "fill_value_numeric is used by impute_numeric='constant' only"),
        ({"impute_categorical": "constant"}, "impute_categorical='constant' needs fill_value_categorical"),
        ({"encode_columns": ["city"]}, "encode_columns needs encode"),
        ({"stratify": True, "target_column": "y"}, "stratify applies to a split: give test_size too"),
        ({"stratify": True, "test_size": 0.2}, "stratify needs target_column"),
        ({"target_column": "y", "drop_columns": ["y"]}, "drop_columns includes the target 'y'"),
        ({"filter": [{"column": "age", "op": ">", "value": "old"}]}, "op '>' compares numbers"),
        ({"filter": [{"column": "age", "op": "in", "value": 3}]}, "op 'in' needs a list of values"),
        ({"filter": [{"column": "age", "op": "is_missing", "value": 3}]}, "takes no value"),
        ({"filter": [{"column": "age", "op": "~="}]}, "filter[0] must be one of '==', '!='"),
        ({"test_size": 1.0}, "test_size must be less than 1.0"),
        ({"output_format": "xlsx"}, "output_format must be one of 'csv', 'parquet'"),
    ],
)
def test_impossible_combinations_are_refused_in_words(fields: dict[str, Any], words: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        parse_spec(spec("/data/x.csv", **fields))
    assert words in str(info.value)


def test_a_bundled_dataset_implies_its_target_and_the_operations_come_in_their_fixed_order() -> None:
    result = parse_spec(spec("sklearn:iris", test_size=0.3, sample_n=50, drop_columns=["petal width (cm)"]))
    assert isinstance(result, PreprocessSpec)
    assert result.target_column == "target"
    assert result.operations == ["drop_columns", "sample", "split"]


# -- the checks at submit ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"target_column": "buyer"}, "target_column 'buyer' is not a column of people.csv"),
        ({"drop_columns": ["town"]}, "drop_columns 'town' is not a column"),
        (
            {"drop_columns": ["age"], "filter": [{"column": "age", "op": ">", "value": 18}]},
            "filter names 'age', which drop_columns removes first",
        ),
        ({"filter": [{"column": "city", "op": "<", "value": 3}]}, "column 'city' holds text such as 'paris'"),
        ({"encode": "one_hot", "encode_columns": ["town"]}, "encode_columns 'town' is not a column"),
        (
            {"target_column": "income", "test_size": 0.2, "stratify": True},
            "it holds continuous numbers such as '1037.5'",
        ),
    ],
)
async def test_columns_the_file_lacks_or_cannot_serve_are_refused_at_submit_and_nothing_is_queued(
    queue_dir: Path, models_dir: Path, people: Path, fields: dict[str, Any], words: str
) -> None:
    async with TrainingService(queue_dir, models_dir, execute=False) as svc:
        with pytest.raises(InvalidInputError) as info:
            await svc.submit(spec(people, **fields))
        assert words in str(info.value)
        assert (await svc.list_tasks()).total == 0


# -- the operations ----------------------------------------------------------------------------------------


def test_a_filter_keeps_rows_meeting_every_condition_and_a_missing_value_meets_none_but_is_missing(
    people: Path,
) -> None:
    frame = pd.read_csv(people)
    kept, notes = ops.apply_filter(
        frame,
        parsed(
            filter=[
                {"column": "age", "op": ">=", "value": 20},
                {"column": "city", "op": "!=", "value": "lyon"},
            ]
        ).filter,
    )
    assert (kept["age"] >= 20).all() and "lyon" not in set(kept["city"]) and kept["city"].notna().all()
    assert [n["rows_removed"] for n in notes] == [5, 6]  # ages 15..19 (18 missing); lyon (5) and a hole
    missing, _ = ops.apply_filter(frame, parsed(filter=[{"column": "age", "op": "is_missing"}]).filter)
    assert list(missing.index) == [3]
    some, _ = ops.apply_filter(
        frame, parsed(filter=[{"column": "bought", "op": "in", "value": ["1"]}]).filter
    )
    assert set(some["bought"]) == {1}  # a number given as text still matches a column of numbers


def test_impute_fills_numbers_and_text_by_their_strategies_and_leaves_the_target(people: Path) -> None:
    frame = pd.read_csv(people)
    frame.loc[7, "bought"] = None
    warnings: list[str] = []
    median, notes = ops.impute(
        frame,
        parsed(target_column="bought", impute_numeric="median", impute_categorical="most_frequent"),
        warnings.append,
    )
    assert median.loc[3, "age"] == frame["age"].median() and median.loc[5, "city"] in {
        "paris",
        "lyon",
        "nice",
    }
    assert pd.isna(median.loc[7, "bought"])
    assert {n["column"]: n["filled"] for n in notes} == {"age": 1, "city": 1}
    constant, _ = ops.impute(
        frame,
        parsed(
            impute_numeric="constant",
            fill_value_numeric=-1,
            impute_categorical="constant",
            fill_value_categorical="?",
        ),
        warnings.append,
    )
    assert (constant.loc[3, "age"], constant.loc[5, "city"]) == (-1.0, "?")
    assert not warnings


def test_one_hot_puts_a_0_1_column_per_value_in_the_columns_place_and_ordinal_codes_sorted_values(
    people: Path,
) -> None:
    frame = pd.read_csv(people)
    hot, notes = ops.encode(frame, parsed(target_column="bought", encode="one_hot"))
    assert list(hot.columns) == ["age", "city_lyon", "city_nice", "city_paris", "income", "bought"]
    assert hot.loc[0, ["city_lyon", "city_nice", "city_paris"]].tolist() == [0, 0, 1]
    assert hot.loc[5, ["city_lyon", "city_nice", "city_paris"]].tolist() == [0, 0, 0]  # a missing city
    assert notes == [
        {"column": "city", "method": "one_hot", "columns": ["city_lyon", "city_nice", "city_paris"]}
    ]
    codes, notes = ops.encode(frame, parsed(encode="ordinal", encode_columns=["city"]))
    assert notes[0]["codes"] == {"lyon": 0, "nice": 1, "paris": 2}
    assert codes.loc[0, "city"] == 2.0 and pd.isna(codes.loc[5, "city"])


def test_a_sample_is_seeded_and_keeps_the_files_order_and_one_larger_than_the_data_warns(
    people: Path,
) -> None:
    frame = pd.read_csv(people)
    warnings: list[str] = []
    first, _ = ops.sample(frame, parsed(sample_n=8, random_state=3), warnings.append)
    again, _ = ops.sample(frame, parsed(sample_n=8, random_state=3), warnings.append)
    assert len(first) == 8 and list(first.index) == list(again.index) == sorted(first.index)
    everything, _ = ops.sample(frame, parsed(sample_n=50), warnings.append)
    assert len(everything) == 20
    assert warnings == ["sample_n=50 but 20 rows remain after the operations before it: all are kept"]


def test_a_split_of_classes_is_stratified_by_default_and_keeps_their_shares(people: Path) -> None:
    frame = pd.read_csv(people)
    warnings: list[str] = []
    train, test, note = ops.split(frame, parsed(target_column="bought", test_size=0.4), warnings.append)
    assert (len(train), len(test)) == (12, 8) and note["stratified"]
    assert test["bought"].value_counts().to_dict() == {0: 4, 1: 4}
    assert set(train.index) | set(test.index) == set(frame.index) and not set(train.index) & set(test.index)
    assert not warnings


def test_a_split_that_cannot_keep_a_class_in_both_parts_warns_by_default_and_fails_when_asked(
    people: Path,
) -> None:
    frame = pd.read_csv(people)
    frame.loc[0, "bought"] = 7  # a class of one row
    warnings: list[str] = []
    _, _, note = ops.split(frame, parsed(target_column="bought", test_size=0.3), warnings.append)
    assert not note["stratified"]
    assert warnings == [
        "split not stratified: class(es) '7' of 'bought' have a single row, which cannot be in both parts"
    ]
    with pytest.raises(TaskFailure) as info:
        ops.split(frame, parsed(target_column="bought", test_size=0.3, stratify=True), warnings.append)
    assert info.value.kind is ErrorKind.DATA_ERROR and "have a single row" in info.value.message


# -- the trainer -------------------------------------------------------------------------------------------


def test_the_trainer_writes_the_split_files_and_a_manifest_and_names_them_in_its_outputs(
    people: Path, tmp_path: Path
) -> None:
    result, ctx = run_in_process(
        parsed(
            data_source=str(people),
            target_column="bought",
            filter=[{"column": "age", "op": "not_missing"}],
            impute_categorical="most_frequent",
            encode="one_hot",
            test_size=0.25,
        ),
        tmp_path,
    )
    out = result.outputs
    assert result.model_id is None and ctx.output_dir is not None
    assert out["output_path"] == out["train_path"] == str(ctx.output_dir / "train.csv")
    assert out["test_path"] == str(ctx.output_dir / "test.csv")
    train, test = pd.read_csv(out["train_path"]), pd.read_csv(out["test_path"])
    assert (len(train), len(test)) == (out["n_train_rows"], out["n_test_rows"]) == (14, 5)
    assert out["n_rows"] == 19 and out["columns"] == list(train.columns) and out["n_columns"] == 6
    assert train["city_paris"].isin([0, 1]).all()
    manifest = json.loads((ctx.output_dir / "manifest.json").read_text())
    assert manifest["operations_order"] == ["filter", "impute", "encode", "split"]
    assert manifest["rows_read"] == 20 and manifest["rows_written"] == 19
    assert not [p for p in ctx.output_dir.parent.iterdir() if p.name.startswith(".tmp-")]


def test_a_filter_that_leaves_no_row_fails_the_task_as_a_data_error_naming_the_conditions(
    people: Path, tmp_path: Path
) -> None:
    with pytest.raises(TaskFailure) as info:
        run_in_process(
            parsed(data_source=str(people), filter=[{"column": "age", "op": ">", "value": 99}]), tmp_path
        )
    assert info.value.kind is ErrorKind.DATA_ERROR
    assert info.value.message == "filter left no rows (of 20): age > 99.0 removed 20."


def test_a_bundled_datasets_unknown_column_fails_when_the_worker_loads_it(tmp_path: Path) -> None:
    with pytest.raises(TaskFailure) as info:
        run_in_process(parsed(data_source="sklearn:iris", drop_columns=["petals"]), tmp_path)
    assert "Columns ['petals'] are not in sklearn:iris" in info.value.message


# -- through the queue -------------------------------------------------------------------------------------


async def test_a_split_through_the_queue_writes_files_a_training_task_then_reads(
    queue_dir: Path, models_dir: Path, blobs_csv: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "data"
    elsewhere.mkdir()
    async with TrainingService(queue_dir, models_dir, data_roots=(elsewhere,)) as svc:
        inside = elsewhere / "blobs.csv"
        inside.write_bytes(blobs_csv.read_bytes())
        task = await svc.submit(spec(inside, target_column="label", encode="one_hot", test_size=0.25))
        done = await svc.wait(task.task_id, timeout_s=60)
        assert done.status is TaskStatus.COMPLETED, done.error
        assert done.model_id is None and done.outputs is not None
        train_path = Path(done.outputs["train_path"])
        assert train_path.parent == queue_dir.resolve() / "datasets" / task.task_id
        assert len(pd.read_csv(train_path)) == 90 and len(pd.read_csv(done.outputs["test_path"])) == 30
        # The server's own datasets are readable data, though --data-root confines callers elsewhere.
        trained = await svc.submit(
            {
                "task_type": "logistic_regression",
                "data_source": str(train_path),
                "target_column": "label",
                "optimize_hyperparameters": False,
            }
        )
        assert (await svc.wait(trained.task_id, timeout_s=60)).status is TaskStatus.COMPLETED
        record = await svc.record(task.task_id)
    assert record.resources is not None and (record.resources.cpu_cores, record.resources.memory_gb) == (
        1,
        0.5,
    )
