"""The forecasting models a series chooses from, each able to backtest itself cheaply.

Every model answers `run(y, origins, horizon, select_end)`: the forecasts it would have
made at each origin (seeing only `y[:origin]`, with parameters chosen on `y[:select_end]`,
which is never later than the first origin) and its forecast after the last observation.
Smoothing models choose their parameters from a small grid evaluated in one vectorised
pass over the series, so a whole rolling-origin backtest costs one pass, not one fit per
origin.

>>> import numpy as np
>>> y = np.tile([1.0, 5.0, 3.0], 20)
>>> run = SeasonalNaive(3).run(y, np.array([30, 33]), 3, 30)
>>> run.backtest.tolist(), run.final.tolist()
([[1.0, 5.0, 3.0], [1.0, 5.0, 3.0]], [1.0, 5.0, 3.0])
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True, slots=True)
class Run:
    backtest: np.ndarray  # (origins, horizon)
    final: np.ndarray  # (horizon,)


class Model(Protocol):
    name: str

    def run(self, y: np.ndarray, origins: np.ndarray, horizon: int, select_end: int) -> Run: ...


class Naive:
    """Tomorrow is like today: the last value, flat."""

    name = "naive"

    def run(self, y: np.ndarray, origins: np.ndarray, horizon: int, select_end: int) -> Run:
        backtest = np.repeat(y[origins - 1][:, None], horizon, axis=1)
        return Run(backtest, np.full(horizon, y[-1]))


class SeasonalNaive:
    """The value one season earlier."""

    def __init__(self, period: int) -> None:
        self.period = period
        self.name = f"seasonal_naive[{period}]"

    def _from(self, y: np.ndarray, origin: int, horizon: int) -> np.ndarray:
        steps = np.arange(horizon)
        return y[origin - self.period + steps % self.period]

    def run(self, y: np.ndarray, origins: np.ndarray, horizon: int, select_end: int) -> Run:
        backtest = np.stack([self._from(y, int(o), horizon) for o in origins])
        return Run(backtest, self._from(y, len(y), horizon))


def _grid(seasonal: bool) -> np.ndarray:
    """(alpha, beta, gamma, phi) rows: additive errors, damped additive trend."""
    rows = []
    for alpha, trend, gamma in itertools.product(
        (0.05, 0.15, 0.3, 0.5, 0.8),
        ((0.0, 1.0), (0.05, 0.9), (0.05, 0.98), (0.2, 0.98)),
        (0.01, 0.05, 0.2) if seasonal else (0.0,),
    ):
        beta_share, phi = trend
        rows.append((alpha, alpha * beta_share, gamma * (1 - alpha), phi))
    return np.array(rows, dtype=np.float64)


def _smoothing_pass(
    y: np.ndarray, period: int, origins: np.ndarray, horizon: int, select_end: int
) -> Run:
    """Holt-Winters (period > 1) or damped Holt (period 1) for every grid row at once.

    Parameters for the backtest are the grid row with the least one-step squared error on
    `y[:select_end]`; for the final forecast, the least on all of `y`.
    """
    grid = _grid(period > 1)
    alpha, beta, gamma, phi = (grid[:, i].copy() for i in range(4))
    steps = np.arange(1, horizon + 1)
    damping = np.cumsum(phi[:, None] ** steps[None, :], axis=1)  # (G, H)
    if period > 1:
        level = np.full(len(grid), y[:period].mean())
        season = np.repeat((y[:period] - y[:period].mean())[:, None], len(grid), axis=1)
        start = period
        slope = (y[period : 2 * period].mean() - level[0]) / period if len(y) >= 2 * period else 0
    else:
        level = np.full(len(grid), y[0])
        season = np.zeros((1, len(grid)))
        start = 1
        slope = float(np.mean(np.diff(y[: min(len(y), 11)]))) if len(y) > 1 else 0.0
    # Rows without a trend keep it at zero; the others start from the first slope seen.
    trend = np.where(beta > 0, slope, 0.0)
    sse = np.zeros(len(grid))
    chosen = 0
    wanted = {int(o): k for k, o in enumerate(origins)}
    backtest = np.empty((len(origins), horizon))

    def predict(t: int, g: int) -> np.ndarray:
        phase = (t + steps - 1) % period
        return level[g] + damping[g] * trend[g] + season[phase, g]

    for t in range(start, len(y)):
        if t == select_end:
            chosen = int(np.argmin(sse))
        if t in wanted:
            backtest[wanted[t]] = predict(t, chosen)
        row = season[t % period]
        damped = phi * trend
        error = y[t] - (level + damped + row)
        sse += error * error
        level += damped + alpha * error
        trend = damped + beta * error
        row += gamma * error
    return Run(backtest, predict(len(y), int(np.argmin(sse))))


class HoltWinters:
    """Additive Holt-Winters with a damped trend and one seasonal period."""

    def __init__(self, period: int) -> None:
        self.period = period
        self.name = f"holt_winters[{period}]"

    def run(self, y: np.ndarray, origins: np.ndarray, horizon: int, select_end: int) -> Run:
        return _smoothing_pass(y, self.period, origins, horizon, select_end)


class DampedTrend:
    """Exponential smoothing with a damped additive trend and no season."""

    name = "damped_trend"

    def run(self, y: np.ndarray, origins: np.ndarray, horizon: int, select_end: int) -> Run:
        return _smoothing_pass(y, 1, origins, horizon, select_end)


def fourier_terms(index: np.ndarray, harmonics: dict[int, int]) -> np.ndarray:
    """Intercept plus sin/cos pairs for each period (in steps) and its harmonics."""
    columns = [np.ones(len(index))]
    for period, count in harmonics.items():
        for k in range(1, count + 1):
            angle = 2 * np.pi * k * index / period
            columns += [np.sin(angle), np.cos(angle)]
    return np.stack(columns, axis=1)


def _huber_fit(x: np.ndarray, y: np.ndarray, iterations: int = 4) -> np.ndarray:
    """Least squares re-weighted towards Huber's loss: a few spikes do not bend the season."""
    weights = np.ones(len(y))
    coef = np.zeros(x.shape[1])
    for _ in range(iterations):
        root = np.sqrt(weights)
        coef = np.linalg.lstsq(x * root[:, None], y * root, rcond=None)[0]
        residual = y - x @ coef
        scale = 1.4826 * np.median(np.abs(residual - np.median(residual))) + 1e-12
        limit = 1.345 * scale
        weights = np.minimum(1.0, limit / np.maximum(np.abs(residual), 1e-12))
    return coef


class FourierSmoothing:
    """Several seasons at once (daily and weekly) as a robust Fourier regression, with a
    damped-trend smoother following what the seasons leave: a small TBATS."""

    def __init__(self, harmonics: dict[int, int]) -> None:
        self.harmonics = harmonics
        self.name = "fourier_smoothing[" + ",".join(f"{p}x{k}" for p, k in harmonics.items()) + "]"

    def run(self, y: np.ndarray, origins: np.ndarray, horizon: int, select_end: int) -> Run:
        n = len(y)
        x = fourier_terms(np.arange(n + horizon, dtype=np.float64), self.harmonics)
        coef = _huber_fit(x[:select_end], y[:select_end])
        seasonal = x @ coef
        residual = _smoothing_pass(y - seasonal[:n], 1, origins, horizon, select_end)
        steps = np.arange(horizon)
        backtest = residual.backtest + np.stack([seasonal[int(o) + steps] for o in origins])
        full = x @ _huber_fit(x[:n], y)
        final = _smoothing_pass(y - full[:n], 1, origins[:0], horizon, n).final + full[n:]
        return Run(backtest, final)
