"""forecast(): the model chosen per series by rolling-origin backtest, with intervals
calibrated on that backtest's own errors.

Intervals, all from the history before the forecast (causal):
1. errors of the chosen model at every backtest origin and horizon step, divided by the
   series' local scale at that origin (mean absolute one-step change over the day before
   it), so a calmer or wilder recent stretch narrows or widens the interval;
2. split-conformal quantiles of those scaled errors per horizon step (neighbouring steps
   pooled), times the local scale at the end of the history;
3. the nominal level recalibrated on the backtest itself: the smallest level whose bands,
   built on the earlier origins only, cover the asked share of the later origins' errors
   (pooled over three cuts). Quantiles of past errors alone are optimistic on real series,
   whose behaviour drifts and whose chosen model was picked on those very errors; this step
   measures how optimistic and corrects for it.

>>> from datetime import datetime, timedelta, UTC
>>> import math
>>> start = datetime(2026, 1, 1, tzinfo=UTC)
>>> times = [start + timedelta(hours=h) for h in range(24 * 14)]
>>> values = [10 + 3 * math.sin(2 * math.pi * h / 24) for h in range(24 * 14)]
>>> result = forecast(times, values, horizon=6)
>>> len(result.mean), result.timestamps[0] == times[-1] + timedelta(hours=1)
(6, True)
>>> bool(abs(result.mean[0] - (10 + 3 * math.sin(2 * math.pi * 336 / 24))) < 0.1)
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

from tunelytics.domain.predict.errors import NotEnoughData
from tunelytics.domain.predict.models import (
    DampedTrend,
    FourierSmoothing,
    HoltWinters,
    Model,
    Naive,
    Run,
    SeasonalNaive,
)
from tunelytics.domain.predict.series import DAY, WEEK, RegularSeries, regular

# A season longer than this many steps is left to the Fourier model (the smoother's
# per-phase state would be learned from too few repetitions, and costs memory per phase).
MAX_SMOOTHED_PERIOD = 2_016
# History beyond this many steps is dropped: older behaviour rarely helps and costs time.
MAX_HISTORY = 6_048
MAX_ORIGINS = 96
COMBINED = "combined"


@dataclass(frozen=True, slots=True)
class Interval:
    level: float
    lower: np.ndarray
    upper: np.ndarray


@dataclass(frozen=True, slots=True)
class Backtest:
    """How the chosen model did on the rolling origins of its own history."""

    origins: int
    mae: float
    # MAE over the in-sample mean absolute seasonal (or one-step) difference; None when
    # that difference is (numerically) zero, a constant or exactly periodic history.
    mase: float | None
    # Coverage of intervals calibrated (the whole procedure, recalibration included) on the
    # earlier half of the origins, measured on the later half: an estimate of how often
    # the interval will contain what happens.
    coverage: dict[float, float]
    candidates: dict[str, float] = field(default_factory=dict)  # model -> backtest MAE
    # The nominal level each interval was built at after recalibration (step 3 above).
    calibrated: dict[float, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Forecast:
    timestamps: list[datetime]
    mean: np.ndarray
    intervals: list[Interval]
    model: str
    step: timedelta
    backtest: Backtest


def minimum_history(horizon: int) -> int:
    """Observations a horizon needs: a training stretch and a few origins to test it on."""
    return max(4 * horizon, 16)


def forecast(
    timestamps: Sequence[datetime],
    values: Sequence[float] | np.ndarray,
    horizon: int,
    levels: Sequence[float] = (0.8, 0.95),
) -> Forecast:
    """Forecast `horizon` steps past the last timestamp at the series' own resolution.

    Raises NotEnoughData when the history cannot support the horizon (no number is made
    up), ValueError on malformed input.
    """
    if horizon < 1:
        raise ValueError("horizon must be at least 1 step")
    if any(not 0 < level < 1 for level in levels):
        raise ValueError("interval levels must lie strictly between 0 and 1")
    series = regular(timestamps, values)
    return forecast_regular(series, horizon, levels)


def forecast_regular(
    series: RegularSeries, horizon: int, levels: Sequence[float] = (0.8, 0.95)
) -> Forecast:
    y = series.values
    offset = max(0, len(y) - MAX_HISTORY)
    y = y[offset:]
    n = len(y)
    needed = minimum_history(horizon)
    if n < needed:
        raise NotEnoughData(
            f"a horizon of {horizon} steps of {_duration(series.step)} needs at least {needed} "
            f"observations at that resolution; the series has {n}"
        )
    day, week = series.period(DAY), series.period(WEEK)
    select_end, origins = _origins(n, horizon, day)
    candidates = _candidates(select_end, day, week)
    runs = {model.name: model.run(y, origins, horizon, select_end) for model in candidates}
    actual = np.stack([y[int(o) : int(o) + horizon] for o in origins])
    mae = {name: float(np.abs(actual - run.backtest).mean()) for name, run in runs.items()}
    runs[COMBINED] = _combine(runs, mae)
    mae[COMBINED] = float(np.abs(actual - runs[COMBINED].backtest).mean())
    best = min(mae, key=lambda name: mae[name])
    width = max(day, 2 * horizon, 24)
    scaled, scale_now = _scaled_errors(actual - runs[best].backtest, y, origins, width)
    mean = runs[best].final
    calibrated = {level: _calibrated_level(scaled, level) for level in levels}
    intervals = [
        Interval(level, mean + scale_now * low, mean + scale_now * high)
        for level in levels
        for low, high in [_bands(scaled, calibrated[level])]
    ]
    scale = _scale(y[:select_end], day)
    backtest = Backtest(
        origins=len(origins),
        mae=mae[best],
        mase=mae[best] / scale if scale > 1e-9 * (1 + float(np.abs(y).mean())) else None,
        coverage={level: _held_out_coverage(scaled, level) for level in levels},
        candidates=mae,
        calibrated=calibrated,
    )
    start = offset + n
    return Forecast(
        timestamps=[series.at(start + h) for h in range(horizon)],
        mean=mean,
        intervals=intervals,
        model=best,
        step=series.step,
        backtest=backtest,
    )


def _origins(n: int, horizon: int, day: int) -> tuple[int, np.ndarray]:
    """Where the backtest starts forecasting: the last stretch of history, a week (errors
    differ by time of day and weekday; a week of NAB backtests gave a lower MASE and more
    honest coverage than one day) and ten horizons long when the history allows."""
    longest = n - horizon - max(2 * horizon, n // 2)
    span = max(0, min(longest, max(10 * horizon, 7 * day, 48)))
    last = n - horizon
    stride = max(1, math.ceil((span + 1) / MAX_ORIGINS))
    origins = np.arange(last - span, last + 1, stride)
    return int(origins[0]), origins


def _candidates(select_end: int, day: int, week: int) -> list[Model]:
    models: list[Model] = [Naive(), DampedTrend()]
    seasons = [p for p in (day, week) if p and 2 * p <= select_end]
    for period in seasons:
        models.append(SeasonalNaive(period))
    smoothed = [p for p in seasons if p <= MAX_SMOOTHED_PERIOD]
    if smoothed:
        models.append(HoltWinters(smoothed[0]))
    if seasons:
        # Harmonics enough for a daily shape; fewer for the week, which the day mostly explains.
        harmonics = {p: min(p // 2, 8 if p == day else 4) for p in seasons}
        models.append(FourierSmoothing(harmonics))
    return models


def _combine(runs: dict[str, Run], mae: dict[str, float]) -> Run:
    """The mean of the three best: combinations are rarely worse than their members."""
    members = sorted(mae, key=lambda name: mae[name])[:3]
    return Run(
        backtest=np.mean([runs[m].backtest for m in members], axis=0),
        final=np.mean([runs[m].final for m in members], axis=0),
    )


def _pooled(errors: np.ndarray, step: int) -> np.ndarray:
    """Errors of this horizon step and its neighbours: more samples per quantile."""
    width = max(1, errors.shape[1] // 8)
    return errors[:, max(0, step - width) : step + width + 1].ravel()


def _band_grid(errors: np.ndarray, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper offsets (levels x steps) at each level: split-conformal ranks, the
    (n+1)-corrected order statistics of each step's pooled signed errors."""
    low = np.empty((len(levels), errors.shape[1]))
    high = np.empty_like(low)
    tail = (1 - levels) / 2
    for h in range(errors.shape[1]):
        ordered = np.sort(_pooled(errors, h))
        n = len(ordered)
        top = np.minimum(n, np.ceil((n + 1) * (1 - tail) - 1e-9)).astype(int)
        bottom = np.maximum(1, np.floor((n + 1) * tail + 1e-9)).astype(int)
        low[:, h], high[:, h] = ordered[bottom - 1], ordered[top - 1]
    return low, high


def _bands(errors: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    low, high = _band_grid(errors, np.array([level]))
    return low[0], high[0]


def _local_scale(y: np.ndarray, points: np.ndarray, width: int) -> np.ndarray:
    """Mean absolute one-step change over the `width` steps before each point."""
    steps = np.concatenate([[0.0], np.cumsum(np.abs(np.diff(y)))])
    end = np.asarray(points) - 1
    start = np.maximum(0, end - width)
    return (steps[end] - steps[start]) / np.maximum(1, end - start)


def _scaled_errors(
    errors: np.ndarray, y: np.ndarray, origins: np.ndarray, width: int
) -> tuple[np.ndarray, float]:
    """Errors over the local scale at their origin, and the scale at the end of y. A
    floor keeps a momentarily flat stretch from blowing up its errors; a series with no
    change at all is left unscaled."""
    at = _local_scale(y, np.append(origins, len(y)), width)
    floor = 0.1 * float(at.mean())
    if floor <= 0:
        return errors, 1.0
    at = np.maximum(at, floor)
    return errors / at[:-1, None], float(at[-1])


# Candidate nominal levels for a target level L: from L up to 1 - (1 - L) / 50.
_LEVEL_STEPS = 41
_CUTS = (0.33, 0.5, 0.67)


def _calibrated_level(errors: np.ndarray, level: float) -> float:
    """The smallest nominal level whose bands from the origins before a cut cover `level`
    of the errors after it, pooled over the cuts (origins are in time order)."""
    n = len(errors)
    cuts = [k for k in (int(n * f) for f in _CUTS) if k >= 4 and n - k >= 1]
    grid = np.linspace(level, 1 - (1 - level) / 50, _LEVEL_STEPS)
    if not cuts:
        return level
    hits = np.zeros(len(grid))
    total = 0
    for k in cuts:
        low, high = _band_grid(errors[:k], grid)  # (levels, steps)
        later = errors[k:][None, :, :]
        inside = (later >= low[:, None, :]) & (later <= high[:, None, :])
        hits += inside.sum(axis=(1, 2))
        total += later.size
    enough = np.flatnonzero(hits >= level * total)
    return float(grid[enough[0]] if len(enough) else grid[-1])


def _held_out_coverage(errors: np.ndarray, level: float) -> float:
    half = len(errors) // 2
    if half < 1 or len(errors) - half < 1:
        return float("nan")
    earlier = errors[:half]
    low, high = _bands(earlier, _calibrated_level(earlier, level))
    later = errors[half:]
    return float(((later >= low) & (later <= high)).mean())


def _scale(history: np.ndarray, day: int) -> float:
    lag = day if day and len(history) > 2 * day else 1
    return float(np.abs(history[lag:] - history[:-lag]).mean())


def _duration(step: timedelta) -> str:
    seconds = step.total_seconds()
    for unit, size in (("day", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)} {unit}"
    return f"{seconds:g} s"
