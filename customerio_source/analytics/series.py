"""The daily series the anomalies and forecasts work on, read from the models (a few small queries)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np

from .definitions import ACTIVITY_DAILY, COUNT_NAMES, ENGAGEMENT_DAILY


@dataclass
class Series:
    """One daily series: consecutive days from ``start``, missing days filled with 0."""

    name: str
    start: dt.date
    values: np.ndarray

    def days(self) -> list[dt.date]:
        return [self.start + dt.timedelta(days=i) for i in range(len(self.values))]

    def day(self, index: int) -> dt.date:
        return self.start + dt.timedelta(days=index)


def _as_date(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])


def dense(name: str, points: dict[dt.date, float], end: dt.date) -> Series | None:
    """A series from its first day to ``end`` (inclusive); None when it has no day on or before ``end``."""
    days = [day for day in points if day <= end]
    if not days:
        return None
    start = min(days)
    values = np.zeros((end - start).days + 1)
    for day, value in points.items():
        if start <= day <= end:
            values[(day - start).days] = float(value or 0)
    return Series(name, start, values)


def read_series(client: Any, models: list[str]) -> tuple[list[Series], dt.date | None]:
    """Every daily series of the built models, and the as-of day (the newest day in them minus one)."""
    raw: dict[str, dict[dt.date, float]] = {}
    newest: dt.date | None = None
    if ENGAGEMENT_DAILY in models:
        sums = ", ".join(f"SUM({c})" for c in COUNT_NAMES)
        rows = (
            client.execute_sql(
                f"SELECT day, {sums} FROM {client.make_qualified_table_name(ENGAGEMENT_DAILY)} GROUP BY day"
            )
            or []
        )
        for row in rows:
            day = _as_date(row[0])
            newest = day if newest is None or day > newest else newest
            for name, value in zip(COUNT_NAMES, row[1:], strict=True):
                if value is not None:
                    raw.setdefault(f"messages.{name}", {})[day] = float(value)
    if ACTIVITY_DAILY in models:
        rows = (
            client.execute_sql(
                f"SELECT day, activity_type, name, SUM(events) FROM {client.make_qualified_table_name(ACTIVITY_DAILY)} "
                "GROUP BY day, activity_type, name"
            )
            or []
        )
        for day_value, kind, name, events in rows:
            day = _as_date(day_value)
            newest = day if newest is None or day > newest else newest
            key = f"activity.{kind}" + (f":{name}" if name else "")
            raw.setdefault(key, {})[day] = float(events)
    if newest is None:
        return [], None
    as_of = newest - dt.timedelta(days=1)
    series = [s for name in sorted(raw) if (s := dense(name, raw[name], as_of)) is not None and s.values.any()]
    return series, as_of
