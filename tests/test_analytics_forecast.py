"""Anomalies (trailing spikes without look-ahead, z-score outliers) and forecasts, with and without statsmodels."""

from __future__ import annotations

import datetime as dt
import sys

import numpy as np
import pytest

from customerio_source.analytics import forecast as fc
from customerio_source.analytics.anomalies import detect, outliers, spikes
from customerio_source.analytics.series import Series, dense

START = dt.date(2026, 1, 5)  # a Monday


def weekly(days: int, seed: int = 3, level: float = 100.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pattern = np.array([1.1, 1.1, 1.1, 1.05, 1.0, 0.45, 0.4])
    return np.array([rng.poisson(level * pattern[i % 7]) for i in range(days)], dtype=float)


def test_spike_found_and_flagged_days_leave_the_baseline() -> None:
    values = np.full(60, 10.0)
    values[::2] = 12.0  # sd ~1
    values[40], values[45] = 30.0, 20.0
    found = spikes(values, k=2.0, window=28, poisson_floor=False)
    assert [i for i, _, _ in found] == [40, 45]  # day 40 would have hidden day 45 had it stayed in the baseline
    i, mean, z = found[0]
    assert mean == pytest.approx(11.0) and z > 10


def test_spikes_never_look_ahead() -> None:
    values = weekly(120)
    values[70] *= 3
    full = spikes(values)
    for cut in (50, 71, 90):
        changed = values.copy()
        changed[cut:] = 0.0 if cut % 2 else 1e6  # rewrite the future
        prefix = [s for s in spikes(changed) if s[0] < cut]
        assert prefix == [s for s in full if s[0] < cut]


def test_spike_k_and_window() -> None:
    values = np.tile([10.0, 12.0], 30)
    values[40] = 17.0  # z ~ 6 against a baseline of sd ~1, 6 above its mean
    plain = {"min_excess": 0, "poisson_floor": False}  # the seed's rule alone: mean + k sigma
    assert [i for i, _, _ in spikes(values, k=2, **plain)] == [40]
    assert spikes(values, k=7, **plain) == []
    assert spikes(values, window=45, **plain) == []  # not enough baseline days before day 40
    with pytest.raises(ValueError):
        spikes(values, window=1)


def test_minimum_volume_rule() -> None:
    values = np.tile([10.0, 12.0], 30)
    values[40] = 15.0  # 4 above the mean: z ~ 4 against the sample sigma, 1.2 against sqrt(11)
    plain = {"min_excess": 0, "poisson_floor": False}
    assert [i for i, _, _ in spikes(values, **plain)] == [40]
    assert spikes(values, min_excess=5, poisson_floor=False) == []  # under the minimum excess
    assert spikes(values, min_excess=0, poisson_floor=True) == []  # within a count's Poisson noise
    values[40] = 19.0  # 8 above: 2.4 Poisson sigmas
    (i, mean, z), = spikes(values)
    assert (i, mean) == (40, pytest.approx(11.0)) and z == pytest.approx(8 / 11**0.5)


def test_low_volume_series_get_almost_no_spikes() -> None:
    """Counts of 0-3 a day (bounces, unsubscribes): mean + 2 sigma alone flags dozens of 2s and 3s."""
    before = after = 0
    for seed in range(6):
        values = np.random.default_rng(seed).poisson(1.2, 180).astype(float)
        plain = len(spikes(values, min_excess=0, poisson_floor=False))
        found = spikes(values)
        assert plain >= 10 and len(found) <= 1, (seed, plain, found)
        before, after = before + plain, after + len(found)
    assert after <= 2 and before >= 100
    values = np.random.default_rng(1).poisson(1.2, 180).astype(float)
    values[120] = 25.0  # a real burst on a quiet series is still a spike
    assert [i for i, _, _ in spikes(values)] == [120]


def test_outliers_high_and_low() -> None:
    values = np.tile([10.0, 11.0, 9.0, 10.0], 20)
    values[10], values[50] = 40.0, -20.0
    found = {i: z for i, _, z in outliers(values)}
    assert set(found) == {10, 50} and found[10] >= 3 and found[50] <= -3
    kinds = {(a.day, a.kind) for a in detect([Series("s", START, values)]) if a.kind != "spike"}
    assert kinds == {(START + dt.timedelta(days=10), "outlier_high"), (START + dt.timedelta(days=50), "outlier_low")}


def test_dense_fills_missing_days_and_stops_at_the_as_of_day() -> None:
    s = dense(
        "x", {START: 3, START + dt.timedelta(days=3): 5, START + dt.timedelta(days=9): 7}, START + dt.timedelta(days=5)
    )
    assert s.start == START and s.values.tolist() == [3, 0, 0, 5, 0, 0]


def _bounds_ordered(f: fc.Forecast) -> None:
    assert np.all(f.lower_95 <= f.lower_80 + 1e-9) and np.all(f.lower_80 <= f.mean + 1e-9)
    assert np.all(f.mean <= f.upper_80 + 1e-9) and np.all(f.upper_80 <= f.upper_95 + 1e-9)
    assert np.all(f.lower_95 >= 0)


def test_ets_forecast_and_backtest_with_statsmodels() -> None:
    pytest.importorskip("statsmodels")  # in the dev extra: CI runs this path
    values = weekly(120)
    result = fc.forecast_series(Series("s", START, values))
    forecast, backtest = result
    assert forecast.kind == "forecast" and forecast.model == fc.ETS_NAME and len(forecast.mean) == 28
    assert forecast.start == START + dt.timedelta(days=120)
    assert backtest.kind == "backtest" and backtest.start == START + dt.timedelta(days=92)
    assert backtest.actual.tolist() == values[-28:].tolist()
    _bounds_ordered(forecast)
    # a strong weekly rhythm: the weekday forecasts sit above the weekend ones
    weekdays = forecast.mean[[i for i in range(28) if (120 + i) % 7 < 5]]
    weekends = forecast.mean[[i for i in range(28) if (120 + i) % 7 >= 5]]
    assert weekdays.min() > weekends.max()
    expected_mape = float(np.mean(np.abs(backtest.actual - backtest.mean) / backtest.actual) * 100)
    assert backtest.mape == pytest.approx(expected_mape) and forecast.mape == backtest.mape
    assert 0 < backtest.mase < 1.2  # about as good as seasonal naive or better on a Poisson series


def test_seasonal_naive_without_statsmodels(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "statsmodels", None)  # as if the [analytics] extra were not installed
    assert fc.statsmodels_available() is False
    values = weekly(60)
    forecast, backtest = fc.forecast_series(Series("s", START, values))
    assert forecast.model == backtest.model == fc.NAIVE_NAME
    assert forecast.mean.tolist() == [values[-7 + (h % 7)] for h in range(28)]
    training = values[:-28]
    assert backtest.mean.tolist() == [training[-7 + (h % 7)] for h in range(28)]
    naive_error = np.mean(np.abs(training[7:] - training[:-7]))
    assert backtest.mase == pytest.approx(np.mean(np.abs(values[-28:] - backtest.mean)) / naive_error)
    _bounds_ordered(forecast)
    # the interval widens week by week
    width = forecast.upper_95 - forecast.lower_95
    assert width[0] < width[7] < width[14] < width[21] or np.all(forecast.lower_95 == 0)


def test_no_forecast_under_14_days_and_no_backtest_under_42() -> None:
    forecasts, skipped = fc.forecast_all(
        [Series("short", START, np.ones(13)), Series("mid", START, weekly(30))], use_statsmodels=False
    )
    assert skipped == {"short": "13 days of history (a forecast needs at least 14)"}
    assert [(f.series, f.kind) for f in forecasts] == [("mid", "forecast")]
    assert forecasts[0].mape is None and forecasts[0].mase is None


def test_mape_ignores_zero_days_and_mase_needs_a_scale() -> None:
    assert fc.mape(np.array([0.0, 10.0]), np.array([5.0, 5.0])) == pytest.approx(50.0)
    assert fc.mape(np.zeros(3), np.ones(3)) is None
    assert fc.mase(np.ones(3), np.ones(3), np.ones(20)) is None  # a flat history has no naive error


@pytest.mark.parametrize("use_statsmodels", [True, False], ids=["ets", "seasonal_naive"])
def test_spike_days_do_not_widen_the_intervals(use_statsmodels: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """A series of ~80 a day with four broadcast days of ~10 times that: the intervals are those of the
    normal days (the spikes are replaced by their weekday's median before the fit), not 0 to ~500."""
    if use_statsmodels:
        pytest.importorskip("statsmodels")
    clean = weekly(120, level=80.0)
    noise = float(np.std(clean - 80.0 * np.resize([1.1, 1.1, 1.1, 1.05, 1.0, 0.45, 0.4], 120)))
    assert 6 < noise < 10  # Poisson noise of ~80 a day
    values = clean.copy()
    broadcast_days = [40, 61, 96, 110]  # the last two inside the backtest (days 92-119)
    values[broadcast_days] *= 10
    series = Series("messages.delivered", START, values)
    anomalies = detect([series])
    assert {(a.day - START).days for a in anomalies if a.kind == "spike"} == set(broadcast_days)

    def width(f: fc.Forecast, level: int = 95) -> float:
        upper, lower = (f.upper_95, f.lower_95) if level == 95 else (f.upper_80, f.lower_80)
        return float(np.mean(upper - lower))

    (forecast, backtest), _ = fc.forecast_all([series], use_statsmodels=use_statsmodels, anomalies=anomalies)
    (unspiked, _), _ = fc.forecast_all([Series("c", START, clean)], use_statsmodels=use_statsmodels)
    # ETS: about 2 x 1.96 sigma; seasonal naive: twice that (week-on-week errors, widening by sqrt(weeks))
    assert 2 * noise < width(forecast) < (6 if use_statsmodels else 11) * noise, (width(forecast), noise)
    assert width(forecast, 80) < width(forecast)
    assert width(forecast) == pytest.approx(width(unspiked), rel=0.1)
    assert float(forecast.upper_95.max()) < 200 and float(np.mean(forecast.mean)) == pytest.approx(70, rel=0.15)
    _bounds_ordered(forecast)
    # the far-off-day rule alone (no anomaly list, e.g. spikes in the trailing rule's first 28 days)
    (alone, _), _ = fc.forecast_all([series], use_statsmodels=use_statsmodels)
    assert width(alone) == pytest.approx(width(forecast), rel=0.1)
    # the backtest still scores the forecast, on its normal days (96 and 110 left out), with the raw actuals
    assert backtest.actual.tolist() == values[-28:].tolist()
    normal = [h for h in range(28) if 92 + h not in (96, 110)]
    assert backtest.mape == pytest.approx(
        float(np.mean(np.abs(values[92:][normal] - backtest.mean[normal]) / values[92:][normal]) * 100)
    )
    assert 0 < backtest.mape < 25 and 0 < backtest.mase < 1.5
    assert forecast.mape == backtest.mape and forecast.mase == backtest.mase
    # fitted on the raw values (as before this rule), the same series gets bands several times wider
    monkeypatch.setattr(fc, "clean", lambda values, flagged=(), weeks=4: np.asarray(values, dtype=float))
    (raw, _), _ = fc.forecast_all([series], use_statsmodels=use_statsmodels, anomalies=anomalies)
    assert width(raw) > 4 * width(forecast)
    assert float(np.mean(raw.lower_95 == 0)) > 0.5 > float(np.mean(forecast.lower_95 == 0))  # bands from 0


def test_clean_replaces_flagged_and_far_off_days_by_their_weekday_median() -> None:
    rng = np.random.default_rng(4)
    values = np.resize([100.0, 100.0, 100.0, 100.0, 100.0, 40.0, 40.0], 84) + rng.integers(-3, 4, 84)
    values[[3, 50, 57]] = [900.0, 1000.0, 950.0]  # day 3: before any trailing baseline; 50 and 57 in a row
    values[30] = 104.0  # flagged (say, a small spike): replaced though near its median
    cleaned = fc.clean(values, flagged={30, 57})
    changed = set(np.flatnonzero(cleaned != values).tolist())
    assert changed == {3, 30, 50, 57}
    for day in (3, 30, 50, 57):  # the median of the same weekday, 4 weeks either side, spikes left out
        same = [values[j] for j in range(day % 7, 84, 7) if 0 < abs(j - day) <= 28 and j not in (3, 50, 57)]
        assert cleaned[day] == pytest.approx(float(np.median(same)))
    assert values[3] == 900.0  # a copy
    flat = np.full(30, 2.0)
    flat[[5, 20]] = [3.0, 6.0]  # within the floor of 4 deviations (at least 1 each): kept
    assert fc.clean(flat).tolist() == flat.tolist()
