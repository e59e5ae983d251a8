"""Date and time columns as features a model can use: year, month, day, day of the week, and hour.

A column whose values are ISO 8601 dates or date-times (`2012-01-31`, `2012-01-31 14:00`,
`2012-01-31T14:00:00Z`) is parsed, not one-hot encoded (every date would be a category of its own) nor
dropped. The transformer is part of the saved pipeline, so prediction parses the same way; a value that
does not parse becomes missing, and is imputed like any missing number.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

__all__ = ["DATE_PARTS", "DateFeatures", "parse_dates"]

DATE_PARTS = ("year", "month", "day", "weekday")  # and "hour", for columns that carry a time of day


def parse_dates(values: pd.Series) -> pd.Series:
    """ISO 8601 dates and date-times as naive UTC timestamps; anything else NaT."""
    parsed = pd.to_datetime(values.astype("string"), format="ISO8601", errors="coerce", utc=True)
    return parsed.dt.tz_localize(None)


class DateFeatures(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """Each date column becomes its year, month, day, day of the week (0 = Monday), and hour when the
    training data had times of day; a value that does not parse gives NaN features."""

    def fit(self, X: Any, y: Any = None) -> DateFeatures:
        frame = pd.DataFrame(X)
        self.columns_ = [str(c) for c in frame.columns]
        self.with_hour_ = {}
        for col in frame.columns:
            parsed = parse_dates(frame[col])
            self.with_hour_[str(col)] = bool((parsed.dt.hour.fillna(0) != 0).any())
        return self

    def transform(self, X: Any) -> Any:
        frame = pd.DataFrame(X)
        parts: list[Any] = []
        for col, name in zip(frame.columns, self.columns_, strict=True):
            parsed = parse_dates(frame[col])
            fields = [parsed.dt.year, parsed.dt.month, parsed.dt.day, parsed.dt.day_of_week]
            if self.with_hour_[name]:
                fields.append(parsed.dt.hour)
            parts += [f.astype("float64").to_numpy() for f in fields]
        return np.column_stack(parts) if parts else np.empty((len(frame), 0))

    def get_feature_names_out(self, input_features: Any = None) -> Any:
        names: list[str] = []
        for name in self.columns_:
            parts = [*DATE_PARTS, "hour"] if self.with_hour_[name] else list(DATE_PARTS)
            names += [f"{name}_{part}" for part in parts]
        return np.asarray(names, dtype=object)
