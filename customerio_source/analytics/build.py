"""One analytics build: the models in the warehouse, then anomalies and forecasts written through
:func:`customerio_source.runner.load` (dlt resources into the same dataset, replaced on every build)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import dlt

from ..runner import load
from .anomalies import Anomaly, detect
from .definitions import (
    ANOMALIES,
    FORECAST,
    HORIZON,
    OUTLIER_Z,
    SERIES,
    SPIKE_K,
    SPIKE_MIN_EXCESS,
    SPIKE_POISSON_FLOOR,
    SPIKE_WINDOW,
)
from .forecast import Forecast, forecast_all
from .models import ModelPlan, build_models
from .series import Series, read_series

SOURCE_NAME = "customerio_analytics"

ANOMALY_COLUMNS = {
    "series": {"data_type": "text", "nullable": False},
    "day": {"data_type": "date", "nullable": False},
    "value": {"data_type": "double"},
    "expected": {"data_type": "double"},
    "z": {"data_type": "double"},
    "kind": {"data_type": "text", "nullable": False},
}
FORECAST_COLUMNS = {
    "series": {"data_type": "text", "nullable": False},
    "day": {"data_type": "date", "nullable": False},
    "kind": {"data_type": "text", "nullable": False},
    "forecast": {"data_type": "double"},
    "lower_80": {"data_type": "double"},
    "upper_80": {"data_type": "double"},
    "lower_95": {"data_type": "double"},
    "upper_95": {"data_type": "double"},
    "actual": {"data_type": "double"},
    "model": {"data_type": "text"},
    "backtest_mape": {"data_type": "double"},
    "backtest_mase": {"data_type": "double"},
}

SERIES_COLUMNS = {
    "series": {"data_type": "text", "nullable": False},
    "first_day": {"data_type": "date"},
    "last_day": {"data_type": "date"},
    "days": {"data_type": "bigint"},
    "total": {"data_type": "double"},
    "forecast_model": {"data_type": "text"},
    "note": {"data_type": "text"},
}


@dataclass
class Settings:
    """What a build is asked for (the CLI's flags)."""

    timezone: str = "UTC"
    k: float = SPIKE_K
    window: int = SPIKE_WINDOW
    z: float = OUTLIER_Z
    min_excess: float = SPIKE_MIN_EXCESS
    poisson_floor: bool = SPIKE_POISSON_FLOOR
    horizon: int = HORIZON
    use_statsmodels: bool | None = None


@dataclass
class BuildResult:
    plan: ModelPlan
    series: list[Series] = field(default_factory=list)
    as_of: dt.date | None = None
    anomalies: list[Anomaly] = field(default_factory=list)
    forecasts: list[Forecast] = field(default_factory=list)
    not_forecast: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def anomaly_rows(anomalies: list[Anomaly]) -> Iterator[dict[str, Any]]:
    for a in anomalies:
        yield {"series": a.series, "day": a.day, "value": a.value, "expected": a.expected, "z": a.z, "kind": a.kind}


def forecast_rows(forecasts: list[Forecast]) -> Iterator[dict[str, Any]]:
    for f in forecasts:
        for i in range(len(f.mean)):
            yield {
                "series": f.series,
                "day": f.start + dt.timedelta(days=i),
                "kind": f.kind,
                "forecast": float(f.mean[i]),
                "lower_80": float(f.lower_80[i]),
                "upper_80": float(f.upper_80[i]),
                "lower_95": float(f.lower_95[i]),
                "upper_95": float(f.upper_95[i]),
                "actual": None if f.actual is None else float(f.actual[i]),
                "model": f.model,
                "backtest_mape": f.mape,
                "backtest_mase": f.mase,
            }


def series_rows(series: list[Series], forecasts: list[Forecast], not_forecast: dict[str, str]) -> Iterator[dict]:
    models = {f.series: f.model for f in forecasts if f.kind == "forecast"}
    for s in series:
        yield {
            "series": s.name,
            "first_day": s.start,
            "last_day": s.day(len(s.values) - 1),
            "days": len(s.values),
            "total": float(s.values.sum()),
            "forecast_model": models.get(s.name),
            "note": not_forecast.get(s.name),
        }


def analytics_source(
    anomalies: list[Anomaly],
    forecasts: list[Forecast],
    series: list[Series] | None = None,
    not_forecast: dict[str, str] | None = None,
) -> Any:
    """The series, anomalies and forecasts as a dlt source of three tables, each replaced on every build
    (an empty build empties them)."""

    @dlt.source(name=SOURCE_NAME, max_table_nesting=0)
    def customerio_analytics() -> Any:
        yield dlt.resource(
            list(series_rows(series or [], forecasts, not_forecast or {})),
            name=SERIES,
            write_disposition="replace",
            columns=SERIES_COLUMNS,
        )
        yield dlt.resource(
            list(anomaly_rows(anomalies)), name=ANOMALIES, write_disposition="replace", columns=ANOMALY_COLUMNS
        )
        yield dlt.resource(
            list(forecast_rows(forecasts)), name=FORECAST, write_disposition="replace", columns=FORECAST_COLUMNS
        )

    return customerio_analytics()


def run_analytics(pipeline: dlt.Pipeline, settings: Settings | None = None) -> BuildResult:
    """Build the models, detect anomalies, forecast every daily series (fitted without its anomaly days)
    and write the series, anomalies and forecasts."""
    settings = settings or Settings()
    started = time.monotonic()
    plan = build_models(pipeline, settings.timezone)
    with pipeline.sql_client() as client:
        series, as_of = read_series(client, plan.models)
    anomalies = detect(series, settings.k, settings.window, settings.z, settings.min_excess, settings.poisson_floor)
    forecasts, not_forecast = forecast_all(series, settings.horizon, settings.use_statsmodels, anomalies)
    load(pipeline, analytics_source(anomalies, forecasts, series, not_forecast))
    return BuildResult(plan, series, as_of, anomalies, forecasts, not_forecast, time.monotonic() - started)
