"""28-day forecasts of daily series with weekly seasonality, and their backtest on the last 28 days.

With statsmodels (the ``[analytics]`` extra): ETS (``statsmodels.tsa.exponential_smoothing.ets.ETSModel``)
with additive error, no trend and an additive weekly season, and its prediction intervals: a level and a
weekday pattern (over 28 days a trend term extrapolates noise more often than it helps, and it fits 2-3
times slower).
Without it, or where ETS fails to fit: seasonal naive (each day repeats the same weekday of the last
week), with intervals from the spread of its one-week-ahead errors, widening with the square root of
the number of weeks ahead. Either model fits the series with its anomaly days (and any other day far
from its weekday's median) replaced by that median (:func:`clean`), so spike days do not widen the
intervals of normal days; the backtest scores the days that are not anomalies. Definitions: :mod:`.definitions`.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .definitions import BACKTEST_DAYS, CLEAN_DEVIATIONS, CLEAN_WEEKS, HORIZON, MIN_HISTORY, SEASON
from .series import Series

if TYPE_CHECKING:
    from .anomalies import Anomaly

Z = {80: 1.2815515655446004, 95: 1.959963984540054}
ETS_NAME = "ets(A,N,A,7)"
NAIVE_NAME = "seasonal_naive(7)"


@dataclass
class Forecast:
    """One series' forecast (``kind`` forecast) or backtest (``kind`` backtest, with the actual values)."""

    series: str
    start: dt.date
    kind: str
    mean: np.ndarray
    lower_80: np.ndarray
    upper_80: np.ndarray
    lower_95: np.ndarray
    upper_95: np.ndarray
    model: str
    actual: np.ndarray | None = None
    mape: float | None = None
    mase: float | None = None


def statsmodels_available() -> bool:
    try:
        return importlib.util.find_spec("statsmodels") is not None
    except (ImportError, ValueError):  # a module hidden with sys.modules[...] = None
        return False


def weekday_medians(values: np.ndarray, weeks: int = CLEAN_WEEKS) -> np.ndarray:
    """For each day, the median of the same weekday in the ``weeks`` weeks before and after it, the day
    itself and NaN days (left-out days) not counted; NaN where no such neighbour is left."""
    x = np.asarray(values, dtype=float)
    out = np.full(len(x), np.nan)
    for weekday in range(SEASON):
        same = x[weekday::SEASON]
        for k in range(len(same)):
            neighbours = np.concatenate((same[max(0, k - weeks) : k], same[k + 1 : k + 1 + weeks]))
            neighbours = neighbours[~np.isnan(neighbours)]
            if len(neighbours):
                out[weekday + SEASON * k] = float(np.median(neighbours))
    return out


def clean(values: np.ndarray, flagged: Iterable[int] = (), weeks: int = CLEAN_WEEKS) -> np.ndarray:
    """``values`` as a forecast fits them (a copy): the ``flagged`` days (the series' anomalies) and any other
    day more than ``CLEAN_DEVIATIONS`` robust deviations from its weekday median (:func:`weekday_medians`
    of the days not flagged) replaced by the weekday median of the days kept. The robust deviation is
    1.4826 x the median absolute difference from those medians, at least 1 and at least the square root
    of the series' median (a count's Poisson noise); the second rule catches spikes the trailing rule
    cannot see, such as those in its first ``window`` days."""
    x = np.asarray(values, dtype=float)
    replace = np.zeros(len(x), dtype=bool)
    for i in flagged:
        if 0 <= i < len(x):
            replace[i] = True
    expected = weekday_medians(np.where(replace, np.nan, x), weeks)
    residual = np.abs(x - expected)[~replace & ~np.isnan(expected)]
    if len(residual):
        mad = 1.4826 * float(np.median(residual))
        scale = max(mad, 1.0, math.sqrt(max(float(np.median(x)), 0.0)))
        with np.errstate(invalid="ignore"):
            replace |= np.abs(x - expected) > CLEAN_DEVIATIONS * scale
        expected = weekday_medians(np.where(replace, np.nan, x), weeks)
    kept = x[~replace]
    fallback = float(np.median(kept)) if len(kept) else 0.0
    out = x.copy()
    out[replace] = np.where(np.isnan(expected[replace]), fallback, expected[replace])
    return out


def seasonal_naive(history: np.ndarray, horizon: int) -> tuple[np.ndarray, dict[int, tuple[np.ndarray, np.ndarray]]]:
    """Seasonal-naive mean and {80, 95: (lower, upper)} bounds."""
    last_week = history[-SEASON:]
    mean = np.array([last_week[h % SEASON] for h in range(horizon)], dtype=float)
    errors = history[SEASON:] - history[:-SEASON]
    sigma = float(np.std(errors, ddof=1)) if len(errors) > 1 else 0.0
    weeks = np.array([math.ceil((h + 1) / SEASON) for h in range(horizon)], dtype=float)
    spread = sigma * np.sqrt(weeks)
    return mean, {level: (mean - Z[level] * spread, mean + Z[level] * spread) for level in Z}


def ets_fit(history: np.ndarray, params: np.ndarray | None = None) -> Any:
    """ETS(A,N,A,7) fitted to ``history`` (heuristic initial states), or smoothed with given ``params``."""
    import pandas as pd
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter on short or flat series
        model = ETSModel(
            pd.Series(history.astype(float)),
            error="add",
            trend=None,
            seasonal="add",
            seasonal_periods=SEASON,
            initialization_method="heuristic",
        )
        return model.fit(disp=False) if params is None else model.smooth(params)


def ets_predict(fit: Any, n: int, horizon: int) -> tuple[np.ndarray, dict[int, tuple[np.ndarray, np.ndarray]]]:
    """Mean and {80, 95: (lower, upper)} of a fitted ETS for the ``horizon`` days after its ``n`` days."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prediction = fit.get_prediction(start=n, end=n + horizon - 1)
        mean = np.asarray(prediction.predicted_mean, dtype=float)
        bounds = {}
        for level in Z:
            frame = prediction.summary_frame(alpha=1 - level / 100)
            bounds[level] = (np.asarray(frame["pi_lower"], dtype=float), np.asarray(frame["pi_upper"], dtype=float))
    if not np.all(np.isfinite(mean)) or not all(np.all(np.isfinite(b)) for pair in bounds.values() for b in pair):
        raise ValueError("ETS produced a non-finite forecast")
    return mean, bounds


ETS_MIN_DAYS = 2 * SEASON + 2


def mape(actual: np.ndarray, predicted: np.ndarray) -> float | None:
    """Mean absolute percentage error (percent) over days with a non-zero actual."""
    mask = actual != 0
    if not mask.any():
        return None
    return float(np.mean(np.abs((actual[mask] - predicted[mask]) / actual[mask])) * 100)


def mase(actual: np.ndarray, predicted: np.ndarray, training: np.ndarray) -> float | None:
    """Mean absolute error scaled by the in-sample seasonal-naive error (lag 7) of ``training``."""
    if len(training) <= SEASON:
        return None
    scale = float(np.mean(np.abs(training[SEASON:] - training[:-SEASON])))
    if scale == 0:
        return None
    return float(np.mean(np.abs(actual - predicted)) / scale)


def _clip(mean: np.ndarray, bounds: dict) -> tuple[np.ndarray, ...]:
    return (np.clip(mean, 0, None), *(np.clip(b, 0, None) for level in (80, 95) for b in bounds[level]))


def forecast_series(
    series: Series,
    horizon: int = HORIZON,
    use_statsmodels: bool | None = None,
    flagged: Iterable[int] = (),
) -> list[Forecast]:
    """The forecast of one series and, with enough history, its backtest; [] under ``MIN_HISTORY`` days.

    ``flagged``: the series' anomaly days (indices), replaced before fitting (:func:`clean`, which also
    replaces far-off days) and left out of the backtest's MAPE and MASE. The backtest's training days are
    cleaned on their own (nothing after them is looked at). ETS is optimized once per series: on the
    training days when there is a backtest (the forecast then smooths the whole series with those
    parameters), on the whole series otherwise.
    """
    raw = series.values
    if len(raw) < MIN_HISTORY:
        return []
    flagged = set(flagged)
    values = clean(raw, flagged)
    if use_statsmodels is None:
        use_statsmodels = statsmodels_available()
    out = []
    backtest_mape = backtest_mase = None
    params = None
    use_ets = use_statsmodels and len(values) >= ETS_MIN_DAYS
    if len(values) >= BACKTEST_DAYS + MIN_HISTORY:
        training, actual = clean(raw[:-BACKTEST_DAYS], flagged), raw[-BACKTEST_DAYS:]
        name, mean, bounds = NAIVE_NAME, *seasonal_naive(training, BACKTEST_DAYS)
        if use_ets and len(training) >= ETS_MIN_DAYS:
            try:
                fit = ets_fit(training)
                mean, bounds = ets_predict(fit, len(training), BACKTEST_DAYS)
                name, params = ETS_NAME, fit.params
            except Exception:  # noqa: BLE001 - a series ETS cannot fit falls back to seasonal naive
                use_ets = False
        else:
            use_ets = False
        mean, lo80, hi80, lo95, hi95 = _clip(mean, bounds)
        normal = np.array([len(training) + h not in flagged for h in range(BACKTEST_DAYS)])
        if normal.any():
            backtest_mape = mape(actual[normal], mean[normal])
            backtest_mase = mase(actual[normal], mean[normal], training)
        out.append(
            Forecast(
                series.name,
                series.day(len(training)),
                "backtest",
                mean,
                lo80,
                hi80,
                lo95,
                hi95,
                name,
                actual=actual,
                mape=backtest_mape,
                mase=backtest_mase,
            )
        )
    name, mean, bounds = NAIVE_NAME, *seasonal_naive(values, horizon)
    if use_ets:
        try:
            mean, bounds = ets_predict(ets_fit(values, params), len(values), horizon)
            name = ETS_NAME
        except Exception:  # noqa: BLE001
            name, mean, bounds = NAIVE_NAME, *seasonal_naive(values, horizon)
    mean, lo80, hi80, lo95, hi95 = _clip(mean, bounds)
    out.insert(
        0,
        Forecast(
            series.name,
            series.day(len(values)),
            "forecast",
            mean,
            lo80,
            hi80,
            lo95,
            hi95,
            name,
            mape=backtest_mape,
            mase=backtest_mase,
        ),
    )
    return out


def flagged_days(series: Series, anomalies: Iterable[Anomaly]) -> set[int]:
    """The indices of the anomaly days (any kind) of ``series`` (for :func:`forecast_series`)."""
    return {(a.day - series.start).days for a in anomalies if a.series == series.name}


def forecast_all(
    series: list[Series],
    horizon: int = HORIZON,
    use_statsmodels: bool | None = None,
    anomalies: Iterable[Anomaly] = (),
) -> tuple[list[Forecast], dict[str, str]]:
    """Forecasts of every series (fitted without their ``anomalies`` days), and the series left without
    one (name -> why)."""
    by_series: dict[str, list[Anomaly]] = {}
    for a in anomalies:
        by_series.setdefault(a.series, []).append(a)
    forecasts: list[Forecast] = []
    skipped: dict[str, str] = {}
    for s in series:
        result = forecast_series(s, horizon, use_statsmodels, flagged_days(s, by_series.get(s.name, ())))
        if result:
            forecasts.extend(result)
        else:
            skipped[s.name] = f"{len(s.values)} days of history (a forecast needs at least {MIN_HISTORY})"
    return forecasts, skipped
