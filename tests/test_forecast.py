"""The forecasting domain: resolution, model choice by backtest, honest intervals, refusals."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from tunelytics.domain.predict import NotEnoughData, forecast
from tunelytics.domain.predict.forecast import minimum_history
from tunelytics.domain.predict.models import HoltWinters, SeasonalNaive
from tunelytics.domain.predict.series import regular

START = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday


def hourly(values: np.ndarray, step: timedelta = timedelta(hours=1)) -> list[datetime]:
    return [START + step * i for i in range(len(values))]


def daily_shape(n: int, period: int = 24) -> np.ndarray:
    t = np.arange(n)
    return 50 + 10 * np.sin(2 * np.pi * t / period) + 4 * np.cos(4 * np.pi * t / period)


def test_resolution_is_inferred_and_forecast_continues_the_grid() -> None:
    step = timedelta(minutes=5)
    values = daily_shape(288 * 4, period=288)
    times = hourly(values, step)
    result = forecast(times, values, horizon=12)
    assert result.step == step
    assert result.timestamps == [times[-1] + step * (h + 1) for h in range(12)]
    assert len(result.mean) == 12
    assert [i.level for i in result.intervals] == [0.8, 0.95]


def test_unsorted_duplicated_and_gappy_input_is_put_on_the_grid() -> None:
    values = daily_shape(24 * 10)
    times = hourly(values)
    keep = [i for i in range(len(values)) if i % 17 != 5]  # ~6% of the steps missing
    shuffled = np.random.default_rng(1).permutation(keep)
    ts = [times[i] for i in shuffled] + [times[3]]
    vs = [float(values[i]) for i in shuffled] + [float(values[3])]
    series = regular(ts, vs)
    assert series.step == timedelta(hours=1)
    assert len(series) == len(values)
    assert np.allclose(series.values[keep], values[keep])


def test_a_clean_daily_season_is_learned() -> None:
    values = daily_shape(24 * 14)
    result = forecast(hourly(values), values, horizon=24)
    expected = daily_shape(24 * 15)[24 * 14 :]
    assert np.abs(result.mean - expected).max() < 0.5
    assert result.backtest.mae < 1e-6
    assert result.backtest.mase is None  # an exactly periodic history has no naive error


def test_the_model_is_chosen_by_backtest() -> None:
    rng = np.random.default_rng(7)
    seasonal = daily_shape(24 * 21) + rng.normal(0, 1, 24 * 21)
    walk = 100 + np.cumsum(rng.normal(0, 1, 24 * 21))
    on_season = forecast(hourly(seasonal), seasonal, horizon=12)
    on_walk = forecast(hourly(walk), walk, horizon=12)
    assert on_season.model != on_walk.model
    # Each choice is the best backtest among its candidates.
    for result in (on_season, on_walk):
        assert result.backtest.mae == min(result.backtest.candidates.values())
        assert result.model in result.backtest.candidates


def test_daily_and_weekly_seasons_together() -> None:
    rng = np.random.default_rng(3)
    n = 24 * 7 * 5
    t = np.arange(n)
    weekend = np.where((t // 24) % 7 >= 5, -15.0, 0.0)
    values = daily_shape(n) + weekend + rng.normal(0, 1, n)
    result = forecast(hourly(values), values, horizon=48)
    future_t = np.arange(n, n + 48)
    truth = daily_shape(n + 48)[n:] + np.where((future_t // 24) % 7 >= 5, -15.0, 0.0)
    daily_naive = values[n - 24 : n][np.arange(48) % 24]
    assert np.abs(result.mean - truth).mean() < 0.5 * np.abs(daily_naive - truth).mean()


def test_a_trend_is_followed() -> None:
    values = 10 + 0.5 * np.arange(200) + np.random.default_rng(2).normal(0, 0.2, 200)
    result = forecast(hourly(values), values, horizon=10)
    expected = 10 + 0.5 * np.arange(200, 210)
    assert np.abs(result.mean - expected).max() < 2.0


@pytest.mark.parametrize("level", [0.8, 0.95])
def test_intervals_cover_about_their_level_on_unseen_futures(level: float) -> None:
    """Many independent histories and futures of one noisy seasonal process: the share of
    future values inside the interval is close to its level."""
    rng = np.random.default_rng(11)
    inside = []
    n, horizon = 24 * 14, 12
    for _ in range(30):
        noise = rng.normal(0, 2, n + horizon)
        values = daily_shape(n + horizon) + noise
        result = forecast(hourly(values[:n]), values[:n], horizon, levels=(level,))
        band = result.intervals[0]
        future = values[n:]
        inside.append(((future >= band.lower) & (future <= band.upper)).mean())
    coverage = float(np.mean(inside))
    assert level - 0.08 <= coverage <= min(1.0, level + 0.08), coverage


def _coverage(seed: int, count: int, noise_sd: np.ndarray) -> dict[float, float]:
    """Mean share of the next 12 hours inside each interval, over `count` independent
    histories of a daily shape plus AR(1) noise (autocorrelated errors, like real series)."""
    rng = np.random.default_rng(seed)
    horizon = 12
    n = len(noise_sd) - horizon
    inside: dict[float, list[float]] = {0.8: [], 0.95: []}
    for _ in range(count):
        shocks = rng.normal(0, 1, len(noise_sd)) * noise_sd
        noise = np.zeros(len(noise_sd))
        for i in range(1, len(noise)):
            noise[i] = 0.5 * noise[i - 1] + shocks[i]
        values = daily_shape(len(noise)) + noise
        result = forecast(hourly(values[:n]), values[:n], horizon)
        future = values[n:]
        for band in result.intervals:
            inside[band.level].append(((future >= band.lower) & (future <= band.upper)).mean())
    return {level: float(np.mean(shares)) for level, shares in inside.items()}


def test_calibrated_intervals_cover_their_level() -> None:
    """100 independent series (fixed seed): the standard error of each coverage figure is
    about 0.02 (0.01 at 95%), so the bounds sit 3 standard errors either side."""
    coverage = _coverage(seed=21, count=100, noise_sd=np.ones(24 * 14 + 12))
    assert 0.74 <= coverage[0.8] <= 0.86, coverage
    assert 0.92 <= coverage[0.95] <= 0.99, coverage


def test_intervals_follow_a_rise_in_noise() -> None:
    """The noise triples over the last 4 days: errors scaled by the local scale widen the
    interval at once, where quantiles of the whole backtest's errors would under-cover."""
    sd = np.ones(24 * 14 + 12)
    sd[24 * 10 :] = 3.0
    coverage = _coverage(seed=22, count=40, noise_sd=sd)
    assert coverage[0.8] >= 0.74, coverage
    assert coverage[0.95] >= 0.92, coverage


def test_intervals_widen_with_uncertainty() -> None:
    rng = np.random.default_rng(5)
    quiet = daily_shape(24 * 14) + rng.normal(0, 0.5, 24 * 14)
    loud = daily_shape(24 * 14) + rng.normal(0, 5, 24 * 14)
    width = [
        float(np.mean(r.intervals[0].upper - r.intervals[0].lower))
        for r in (forecast(hourly(v), v, 12) for v in (quiet, loud))
    ]
    assert width[1] > 4 * width[0]
    result = forecast(hourly(loud), loud, 12)
    narrow, wide = result.intervals
    assert np.all(wide.upper >= narrow.upper) and np.all(wide.lower <= narrow.lower)


def test_a_horizon_beyond_the_history_is_refused() -> None:
    values = daily_shape(100)
    with pytest.raises(NotEnoughData, match="needs at least"):
        forecast(hourly(values), values, horizon=26)
    assert minimum_history(25) == 100
    assert len(forecast(hourly(values), values, horizon=25).mean) == 25


def test_too_little_or_too_irregular_history_is_refused() -> None:
    with pytest.raises(NotEnoughData):
        forecast(hourly(np.ones(2)), [1.0, 2.0], horizon=1)
    with pytest.raises(NotEnoughData, match="one timestamp"):
        forecast([START] * 5, [1.0] * 5, horizon=1)
    sparse = [START + timedelta(hours=h) for h in (0, 1, 2, 50, 51, 52, 100, 101, 102)]
    with pytest.raises(NotEnoughData, match="missing"):
        forecast(sparse, [1.0] * len(sparse), horizon=1)


def test_bad_arguments_are_errors() -> None:
    values = daily_shape(100)
    with pytest.raises(ValueError):
        forecast(hourly(values), values, horizon=0)
    with pytest.raises(ValueError):
        forecast(hourly(values), values, horizon=4, levels=(1.5,))
    with pytest.raises(ValueError):
        forecast(hourly(values), [*values[:-1], math.nan], horizon=4)


def test_a_constant_history_forecasts_the_constant_without_a_mase() -> None:
    values = np.full(200, 7.0)
    result = forecast(hourly(values), values, horizon=5)
    assert np.allclose(result.mean, 7.0)
    assert result.backtest.mase is None
    assert np.allclose(result.intervals[0].lower, 7.0)


def test_backtests_see_only_the_past() -> None:
    """Changing what happens after an origin cannot change that origin's forecast."""
    rng = np.random.default_rng(4)
    y = daily_shape(24 * 10) + rng.normal(0, 1, 24 * 10)
    changed = y.copy()
    changed[200:] += 50
    origins = np.array([150, 200])
    for model in (SeasonalNaive(24), HoltWinters(24)):
        a = model.run(y, origins, 6, 150).backtest
        b = model.run(changed, origins, 6, 150).backtest
        assert np.array_equal(a, b)
