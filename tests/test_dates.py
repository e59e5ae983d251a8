"""A dataset as users bring them: a date column, missing values, a category, end to end."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import anyio
import pytest

from mcp_trainer import TaskStatus, TrainingService
from mcp_trainer.artifacts.model_dir import read_metadata
from mcp_trainer.preflight.tabular import check_dataset
from mcp_trainer.specs.tabular import TabularSpec
from mcp_trainer.trainers.tabular.features import DateFeatures

pytestmark = pytest.mark.anyio


@pytest.fixture
def weather_csv(tmp_path: Path) -> Path:
    """730 days: the season (warm May-September) follows the date; wind and sky are noise with holes."""
    rng = random.Random(3)
    lines = ["date,wind,sky,season"]
    for i in range(730):
        day = dt.date(2020, 1, 1) + dt.timedelta(days=i)
        wind = "" if rng.random() < 0.1 else f"{rng.uniform(0, 30):.1f}"
        sky = "NA" if rng.random() < 0.1 else rng.choice(["sun", "rain", "fog"])
        season = "warm" if 5 <= day.month <= 9 else "cold"
        lines.append(f"{day.isoformat()},{wind},{sky},{season}")
    path = tmp_path / "weather.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_an_iso_date_column_passes_the_check_as_dates_not_as_free_text(weather_csv: Path) -> None:
    summary = check_dataset(
        TabularSpec(task_type="svm_classification", data_source=str(weather_csv), target_column="season")
    )
    assert summary.dates == ["date"] and summary.categorical == ["sky"]


def test_date_parts_are_the_year_month_day_and_weekday_and_the_hour_when_there_are_times() -> None:
    import pandas as pd

    dates = DateFeatures().fit(pd.DataFrame({"d": ["2021-07-15", "2021-12-31", None]}))
    assert dates.transform(pd.DataFrame({"d": ["2021-07-15"]})).tolist() == [[2021, 7, 15, 3]]
    assert list(dates.get_feature_names_out()) == ["d_year", "d_month", "d_day", "d_weekday"]
    times = DateFeatures().fit(pd.DataFrame({"t": ["2021-07-15 14:30", "2021-07-16T09:00:00Z"]}))
    assert times.transform(pd.DataFrame({"t": ["2021-07-15 14:30"]})).tolist() == [[2021, 7, 15, 3, 14]]


async def test_a_model_learns_from_a_date_column_with_missing_values_and_predicts_from_dates(
    queue_dir: Path, models_dir: Path, weather_csv: Path
) -> None:
    spec = {
        "task_type": "random_forest_classification",
        "data_source": str(weather_csv),
        "target_column": "season",
        "n_trials": 4,
        "cv_folds": 3,
    }
    async with TrainingService(queue_dir, models_dir) as svc:
        done = await svc.wait((await svc.submit(spec)).task_id, timeout_s=120)
        assert done.status is TaskStatus.COMPLETED, done.error
        assert done.model_id is not None and done.metrics is not None
        assert done.metrics["accuracy"] > 0.9  # the date gives the season away; wind and sky do not
        with anyio.fail_after(60):  # permutation importances come with the plots, after the task completes
            while (await svc.model_info(done.model_id)).plots_being_drawn:
                await anyio.sleep(0.05)
        meta = read_metadata(models_dir, done.model_id)
        assert meta["features"]["types"] == {"wind": "numeric", "date": "datetime", "sky": "categorical"}
        importance = meta["feature_importances"]["permutation"]
        assert next(iter(importance["mean"])) == "date"
        assert "date_month" in meta["feature_importances"]["model"]["values"]
        rows = [
            {"date": "2023-07-15", "wind": 3.0, "sky": "sun"},
            {"date": "2023-01-20", "wind": None, "sky": None},
            {"date": "last tuesday", "wind": 3.0, "sky": "sun"},
        ]
        out = await svc.predict(done.model_id, rows=rows)
    assert out.predictions[:2] == ["warm", "cold"]
    assert [(n.row, n.column) for n in out.notes] == [(2, "date")]
    assert "not an ISO 8601 date" in out.notes[0].note
