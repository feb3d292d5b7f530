"""Robust statistical views of a series: each point as a robust z-score against its own past.

Five views: the value against the recent level (spikes, level shifts), the step from the
previous point (sudden jumps), the mean of the last few points against the level (drifts,
sustained shifts), and, once the sampling interval and a few days are known, the residual
from the same time on previous days (changed daily rhythm) and on the same weekday of
previous weeks (changed weekly rhythm: a Saturday that behaves like a Monday). Each view
is calibrated into a tail rank among its own recent history (`tail_rank`), so one
threshold fits every series; the score is the strongest view, discounted for the five
chances it had (ln 5 nats of evidence: a Bonferroni correction), or, where stronger, a
value outside the whole range seen so far by a tenth of that range (HTM's "spatial
anomaly" on NAB): a record of its own kind.

>>> d = RobustViews()
>>> scores = [d.score_one(float(x % 7)) for x in range(400)] + [d.score_one(60.0)]
>>> scores[-1] > 0.99 > max(scores[300:400])
True
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from tunelytics.domain.monitoring.context import (
    LARGE,
    discounted_many,
    from_surprise,
    split_batch,
    surprise,
    tail_rank,
    tail_rank_many,
)
from tunelytics.domain.monitoring.window import SortedWindow

DAY = 86_400.0
WEEK = 7
VIEWS = 5


@dataclass(frozen=True)
class RobustConfig:
    level_window: int = 300
    history_window: int = 1500
    short_mean: int = 6
    warmup: int = 30
    # Daily rhythm: how many past days the seasonal reference takes its median over.
    seasonal_days: int = 7
    # Weekly rhythm: past weeks for its median; only where that many weeks fit in memory.
    seasonal_weeks: int = 3
    max_past: int = 20_000
    # Points whose spacing gives the sampling interval (their median).
    interval_sample: int = 20
    # Outside the range seen by this share of it: evidence of `range_surprise` nats (just
    # above a record's ln 800). NAB dev: 62.4 without, 65.4 with; share 0.05 / 0.2: 65.3 / 64.0.
    range_tolerance: float = 0.1
    range_surprise: float = 8.0


def _robust_z(value: float, window: SortedWindow, spread_floor: float) -> float:
    """Distance from the median in robust standard deviations (the interquartile range
    read straight off the sorted window: O(1), unlike a MAD)."""
    s = window.sorted
    n = len(s)
    spread = (s[(3 * n) // 4] - s[n // 4]) / 1.349
    z = abs(value - window.median()) / max(spread, spread_floor)
    return z if not math.isnan(z) else 0.0


def _robust_z_many(
    values: np.ndarray, quartiles: tuple[np.ndarray, np.ndarray, np.ndarray], floor: np.ndarray
) -> np.ndarray:
    """`_robust_z` of each of `values` against its window's (median, lower, upper
    quartile), as `SortedWindow.quartiles_many` gives them."""
    median, low, high = quartiles
    spread = (high - low) / 1.349
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        z = np.abs(values - median) / np.where(floor > spread, floor, spread)  # max(), NaN too
    return np.where(np.isnan(z), 0.0, z)


class RobustViews:
    def __init__(self, config: RobustConfig | None = None) -> None:
        self.config = c = config or RobustConfig()
        self.levels = SortedWindow(c.level_window)
        self.steps = SortedWindow(c.level_window)
        self.residuals = SortedWindow(c.level_window)
        self.weekly_residuals = SortedWindow(c.level_window)
        self.recent: deque[float] = deque(maxlen=c.short_mean)
        self.histories = [SortedWindow(c.history_window) for _ in range(VIEWS)]
        self.previous: float | None = None
        # Sampling interval, learned from the first timestamps; then the points per day.
        self.gaps: list[float] = []
        self.last_at: float | None = None
        self.period = 0
        self.week = 0  # points per week, where weeks fit in memory
        self.past: deque[float] = deque()
        self.low: float | None = None  # the range of every value seen
        self.high: float | None = None

    def score_one(self, value: float, at: float | None = None) -> float:
        """Score `value` (observed at `at`, epoch seconds, if known) against the past, then
        learn it. Never uses later points."""
        c = self.config
        self._learn_interval(at)
        seasonal = self._seasonal_residual(value, self.period, c.seasonal_days)
        weekly = self._seasonal_residual(value, self.week, c.seasonal_weeks)
        self.recent.append(value)
        score = 0.0
        if len(self.levels) >= c.warmup and self.previous is not None:
            floor = 1e-9 + 1e-6 * abs(self.levels.median())
            views = [
                (_robust_z(value, self.levels, floor), self.histories[0]),
                (_robust_z(value - self.previous, self.steps, floor), self.histories[1]),
                (
                    _robust_z(sum(self.recent) / len(self.recent), self.levels, floor),
                    self.histories[2],
                ),
            ]
            if seasonal is not None and len(self.residuals) >= c.warmup:
                views.append((_robust_z(seasonal, self.residuals, floor), self.histories[3]))
            if weekly is not None and len(self.weekly_residuals) >= c.warmup:
                views.append((_robust_z(weekly, self.weekly_residuals, floor), self.histories[4]))
            for view, history in views:
                if len(history) >= c.warmup:
                    score = max(score, tail_rank(view, history))
                history.add(view)
            score = from_surprise(surprise(score) - math.log(VIEWS))
        score = max(score, self._outside_range(value))
        if self.previous is not None:
            self.steps.add(value - self.previous)
        if seasonal is not None:
            self.residuals.add(seasonal)
        if weekly is not None:
            self.weekly_residuals.add(weekly)
        self.levels.add(value)
        if self.period > 0:
            self.past.append(value)
        self.previous = value
        return score

    def learn_one(self, value: float, at: float | None = None) -> None:
        self.score_one(value, at)

    def score_many(self, values: np.ndarray, at: np.ndarray | None = None) -> np.ndarray:
        """`score_one` over finite `values` (observed at `at`), in order: the same scores and
        state."""
        c = self.config
        return split_batch(
            len(values),
            lambda: len(self.levels) < c.warmup or (at is not None and not self.period),
            lambda i: self.score_one(float(values[i]), None if at is None else float(at[i])),
            lambda start: self._score_steady(values[start:]),
        )

    def _score_steady(self, values: np.ndarray) -> np.ndarray:
        """A batch once the levels are warm and the sampling interval is settled (or never
        known): every view of every point at once, the windows' quartiles and the ranks
        taken as they stood before each point."""
        c, b = self.config, len(values)
        assert self.previous is not None and self.low is not None and self.high is not None
        if not (max(-self.low, self.high) <= LARGE and np.abs(values).max() <= LARGE):
            return np.array([self.score_one(v) for v in values.tolist()])
        each = np.arange(b)
        # `past` then the batch, once for both seasons (np.fromiter: np.array of a deque
        # of thousands of floats costs more than a small batch's scoring).
        past = np.concatenate([np.fromiter(self.past, float, len(self.past)), values])
        seasonal, has_seasonal = self._seasonal_many(values, past, self.period, c.seasonal_days)
        weekly, has_weekly = self._seasonal_many(values, past, self.week, c.seasonal_weeks)
        recent = np.concatenate([np.fromiter(self.recent, float, len(self.recent)), values])
        short = np.zeros(b)
        for k in range(c.short_mean - 1, -1, -1):  # sum() of the deque: oldest first
            short = short + recent[len(recent) - b - k : len(recent) - k]
        short = short / c.short_mean
        before = np.concatenate([[self.previous], values[:-1]])
        steps = values - before
        levels = self.levels.quartiles_many(values, each)
        floor = 1e-9 + 1e-6 * np.abs(levels[0])
        views: list[tuple[np.ndarray, np.ndarray | None]] = [
            (_robust_z_many(values, levels, floor), None),
            (_robust_z_many(steps, self.steps.quartiles_many(steps, each), floor), None),
            (_robust_z_many(short, levels, floor), None),
        ]
        for residual, has, window in (
            (seasonal, has_seasonal, self.residuals),
            (weekly, has_weekly, self.weekly_residuals),
        ):
            added = residual[has]
            counts = np.cumsum(has) - has  # residuals added before each point
            ranked = has & (len(window) + counts >= c.warmup)
            view = np.zeros(b)
            view[ranked] = _robust_z_many(
                residual[ranked], window.quartiles_many(added, counts[ranked]), floor[ranked]
            )
            views.append((view, ranked))
        score = np.zeros(b)
        for (view, ranked), history in zip(views, self.histories, strict=True):
            if ranked is None:
                score = np.maximum(score, tail_rank_many(view, history, c.warmup))
            else:
                score[ranked] = np.maximum(
                    score[ranked], tail_rank_many(view[ranked], history, c.warmup)
                )
        score = discounted_many(score, math.log(VIEWS))
        lows = np.minimum.accumulate(np.concatenate([[self.low], values]))
        highs = np.maximum.accumulate(np.concatenate([[self.high], values]))
        low, high = lows[:-1], highs[:-1]
        margin = c.range_tolerance * (high - low)
        outside = (high > low) & ((values > high + margin) | (values < low - margin))
        score = np.maximum(score, np.where(outside, from_surprise(c.range_surprise), 0.0))
        self.low, self.high = float(lows[-1]), float(highs[-1])
        self.recent.extend(values[-c.short_mean :].tolist())
        if self.period > 0:
            self.past.extend(values.tolist())
        self.previous = float(values[-1])
        return score

    def _seasonal_many(
        self, values: np.ndarray, past: np.ndarray, period: int, most: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """`_seasonal_residual` of each of `values` as `past` grows with them (`past`: the
        values held, then `values`), and where there is one."""
        b = len(values)
        if period <= 0:
            return np.zeros(b), np.zeros(b, dtype=bool)
        n0 = len(self.past)
        held = np.minimum(n0 + np.arange(b), self.past.maxlen or n0 + b)
        has = held >= 2 * period
        if not has.any():
            return np.zeros(b), has
        taken = np.minimum(held // period, most)  # same times in the past, per point
        k = np.arange(1, most + 1)
        at = n0 + np.arange(b)[:, None] - k[None, :] * period
        same_time = np.where(k[None, :] <= taken[:, None], past[np.maximum(at, 0)], np.inf)
        same_time.sort(axis=1, kind="stable")  # as sorted(): which of 0.0 and -0.0 is the median
        rows = np.arange(b)
        m = np.maximum(taken, 1)
        middle = same_time[rows, m // 2]
        median = np.where(
            m % 2 == 1, middle, 0.5 * (same_time[rows, np.maximum(m // 2 - 1, 0)] + middle)
        )
        return np.where(has, values - median, 0.0), has

    def _outside_range(self, value: float) -> float:
        """A record score when `value` is far outside every value seen, then learn it."""
        c, low, high = self.config, self.low, self.high
        self.low = value if low is None else min(low, value)
        self.high = value if high is None else max(high, value)
        if low is None or high is None or not high > low:
            return 0.0
        margin = c.range_tolerance * (high - low)  # inf for huge ranges: nothing is outside
        if value > high + margin or value < low - margin:
            return from_surprise(c.range_surprise)
        return 0.0

    def _learn_interval(self, at: float | None) -> None:
        if at is None or self.period:
            return
        if self.last_at is not None and at > self.last_at:
            self.gaps.append(at - self.last_at)
        self.last_at = at
        if len(self.gaps) >= self.config.interval_sample:
            gaps = sorted(self.gaps)
            per_day = round(DAY / gaps[len(gaps) // 2])
            # Too coarse for a daily shape, or too fine to hold days of it: no seasonal view.
            self.period = per_day if 4 <= per_day <= 2_000 else -1
            if self.period > 0:
                self._start_seasons()

    def _start_seasons(self) -> None:
        c = self.config
        weeks = WEEK * self.period * c.seasonal_weeks
        self.week = WEEK * self.period if weeks <= c.max_past else 0
        self.past = deque(
            self.past, maxlen=max(self.period * c.seasonal_days, weeks if self.week else 0)
        )

    def _seasonal_residual(self, value: float, period: int, most: int) -> float | None:
        """`value` minus the median of the same time in the previous periods (two at least,
        `most` at most)."""
        if period <= 0 or len(self.past) < 2 * period:
            return None
        n = len(self.past)
        same_time = sorted(self.past[n - k * period] for k in range(1, min(n // period, most) + 1))
        m = len(same_time)
        middle = same_time[m // 2] if m % 2 else 0.5 * (same_time[m // 2 - 1] + same_time[m // 2])
        return value - middle

    def state(self) -> dict[str, Any]:
        return {
            "levels": self.levels.state(),
            "steps": self.steps.state(),
            "residuals": self.residuals.state(),
            "weekly_residuals": self.weekly_residuals.state(),
            "recent": list(self.recent),
            "histories": [h.state() for h in self.histories],
            "previous": self.previous,
            "gaps": self.gaps,
            "last_at": self.last_at,
            "period": self.period,
            "past": list(self.past),
            "low": self.low,
            "high": self.high,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], config: RobustConfig | None = None) -> RobustViews:
        views = cls(config)
        views.levels = SortedWindow.from_state(state["levels"])
        views.steps = SortedWindow.from_state(state["steps"])
        views.residuals = SortedWindow.from_state(state["residuals"])
        views.weekly_residuals = SortedWindow.from_state(state["weekly_residuals"])
        views.recent.extend(state["recent"])
        views.histories = [SortedWindow.from_state(h) for h in state["histories"]]
        views.previous = state["previous"]
        views.gaps = list(state["gaps"])
        views.last_at = state["last_at"]
        views.period = state["period"]
        views.past = deque(state["past"])
        views.low, views.high = state["low"], state["high"]
        if views.period > 0:
            views._start_seasons()
        return views
