"""Spike days (trailing mean + k sigma, no look-ahead, with a minimum volume) and z-score outliers of daily
series (definitions: :mod:`.definitions`)."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import numpy as np

from .definitions import OUTLIER_Z, SPIKE_K, SPIKE_MIN_EXCESS, SPIKE_POISSON_FLOOR, SPIKE_WINDOW
from .series import Series


@dataclass(frozen=True)
class Anomaly:
    """One row of ``engagement_anomalies``."""

    series: str
    day: dt.date
    value: float
    expected: float
    z: float
    kind: str
    """``spike``, ``outlier_high`` or ``outlier_low``."""


def spikes(
    values: np.ndarray,
    k: float = SPIKE_K,
    window: int = SPIKE_WINDOW,
    min_excess: float = SPIKE_MIN_EXCESS,
    poisson_floor: bool = SPIKE_POISSON_FLOOR,
) -> list[tuple[int, float, float]]:
    """(index, trailing mean, z) of every day above the mean + ``k`` standard deviations of the ``window``
    baseline days before it, and at least ``min_excess`` above that mean. With ``poisson_floor`` the
    deviation is at least the square root of the mean (the noise of a count). A day flagged as a spike
    leaves later baselines (one spike does not hide the next); a baseline needs ``window`` days and a
    positive deviation."""
    if window < 2:
        raise ValueError("the spike window must be at least 2 days")
    found: list[tuple[int, float, float]] = []
    baseline: list[float] = []
    for i, value in enumerate(values):
        if len(baseline) >= window:
            recent = np.asarray(baseline[-window:])
            mean, sd = float(recent.mean()), float(recent.std(ddof=1))
            if poisson_floor and mean > 0:
                sd = max(sd, math.sqrt(mean))
            if sd > 0 and value > mean + k * sd and value - mean >= min_excess:
                found.append((i, mean, (float(value) - mean) / sd))
                continue
        baseline.append(float(value))
    return found


def outliers(values: np.ndarray, z: float = OUTLIER_Z) -> list[tuple[int, float, float]]:
    """(index, series mean, z) of every day whose z-score against the whole series is at least ``z`` in size."""
    if len(values) < 3:
        return []
    mean, sd = float(values.mean()), float(values.std(ddof=1))
    if sd == 0:
        return []
    scores = (values - mean) / sd
    return [(int(i), mean, float(scores[i])) for i in np.flatnonzero(np.abs(scores) >= z)]


def detect(
    series: list[Series],
    k: float = SPIKE_K,
    window: int = SPIKE_WINDOW,
    z: float = OUTLIER_Z,
    min_excess: float = SPIKE_MIN_EXCESS,
    poisson_floor: bool = SPIKE_POISSON_FLOOR,
) -> list[Anomaly]:
    """Spikes and outliers of every series, by series then day."""
    found: list[Anomaly] = []
    for s in series:
        for i, mean, score in spikes(s.values, k, window, min_excess, poisson_floor):
            found.append(Anomaly(s.name, s.day(i), float(s.values[i]), mean, score, "spike"))
        for i, mean, score in outliers(s.values, z):
            kind = "outlier_high" if score > 0 else "outlier_low"
            found.append(Anomaly(s.name, s.day(i), float(s.values[i]), mean, score, kind))
    found.sort(key=lambda a: (a.series, a.day, a.kind))
    return found
