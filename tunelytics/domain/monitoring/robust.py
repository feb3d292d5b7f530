"""Robust statistical views of a series: each point as a robust z-score against its own past.

Four views: the value against the recent level (spikes, level shifts), the step from the
previous point (sudden jumps), the mean of the last few points against the level (drifts,
sustained shifts), and, once the sampling interval and a few days are known, the residual
from the same time on previous days (changed daily rhythm). Each view is calibrated into a
tail rank among its own recent history (`tail_rank`), so one threshold fits every series;
the score is the strongest view.

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

from tunelytics.domain.monitoring.context import tail_rank
from tunelytics.domain.monitoring.window import SortedWindow

DAY = 86_400.0
VIEWS = 4


@dataclass(frozen=True)
class RobustConfig:
    level_window: int = 300
    history_window: int = 1500
    short_mean: int = 6
    warmup: int = 30
    # Daily rhythm: how many past days the seasonal reference takes its median over.
    seasonal_days: int = 7
    # Points whose spacing gives the sampling interval (their median).
    interval_sample: int = 20


def _robust_z(value: float, window: SortedWindow, spread_floor: float) -> float:
    """Distance from the median in robust standard deviations (the interquartile range
    read straight off the sorted window: O(1), unlike a MAD)."""
    s, n = window.sorted, len(window.sorted)
    spread = (s[(3 * n) // 4] - s[n // 4]) / 1.349
    z = abs(value - window.median()) / max(spread, spread_floor)
    return z if not math.isnan(z) else 0.0


class RobustViews:
    def __init__(self, config: RobustConfig | None = None) -> None:
        self.config = c = config or RobustConfig()
        self.levels = SortedWindow(c.level_window)
        self.steps = SortedWindow(c.level_window)
        self.residuals = SortedWindow(c.level_window)
        self.recent: deque[float] = deque(maxlen=c.short_mean)
        self.histories = [SortedWindow(c.history_window) for _ in range(VIEWS)]
        self.previous: float | None = None
        # Sampling interval, learned from the first timestamps; then the points per day.
        self.gaps: list[float] = []
        self.last_at: float | None = None
        self.period = 0
        self.past: deque[float] = deque()

    def score_one(self, value: float, at: float | None = None) -> float:
        """Score `value` (observed at `at`, epoch seconds, if known) against the past, then
        learn it. Never uses later points."""
        c = self.config
        self._learn_interval(at)
        seasonal = self._seasonal_residual(value)
        self.recent.append(value)
        score = 0.0
        if len(self.levels) >= c.warmup and self.previous is not None:
            floor = 1e-9 + 1e-6 * abs(self.levels.median())
            views = [
                _robust_z(value, self.levels, floor),
                _robust_z(value - self.previous, self.steps, floor),
                _robust_z(sum(self.recent) / len(self.recent), self.levels, floor),
            ]
            if seasonal is not None and len(self.residuals) >= c.warmup:
                views.append(_robust_z(seasonal, self.residuals, floor))
            for view, history in zip(views, self.histories, strict=False):
                if len(history) >= c.warmup:
                    score = max(score, tail_rank(view, history))
                history.add(view)
        if self.previous is not None:
            self.steps.add(value - self.previous)
        if seasonal is not None:
            self.residuals.add(seasonal)
        self.levels.add(value)
        if self.period > 0:
            self.past.append(value)
        self.previous = value
        return score

    def learn_one(self, value: float, at: float | None = None) -> None:
        self.score_one(value, at)

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
                self.past = deque(maxlen=self.period * self.config.seasonal_days)

    def _seasonal_residual(self, value: float) -> float | None:
        """`value` minus the median of the same time on the previous days (two at least)."""
        if self.period <= 0 or len(self.past) < 2 * self.period:
            return None
        n = len(self.past)
        same_time = sorted(self.past[n - k * self.period] for k in range(1, n // self.period + 1))
        m = len(same_time)
        middle = same_time[m // 2] if m % 2 else 0.5 * (same_time[m // 2 - 1] + same_time[m // 2])
        return value - middle

    def state(self) -> dict[str, Any]:
        return {
            "levels": self.levels.state(),
            "steps": self.steps.state(),
            "residuals": self.residuals.state(),
            "recent": list(self.recent),
            "histories": [h.state() for h in self.histories],
            "previous": self.previous,
            "gaps": self.gaps,
            "last_at": self.last_at,
            "period": self.period,
            "past": list(self.past),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], config: RobustConfig | None = None) -> RobustViews:
        views = cls(config)
        views.levels = SortedWindow.from_state(state["levels"])
        views.steps = SortedWindow.from_state(state["steps"])
        views.residuals = SortedWindow.from_state(state["residuals"])
        views.recent.extend(state["recent"])
        views.histories = [SortedWindow.from_state(h) for h in state["histories"]]
        views.previous = state["previous"]
        views.gaps = list(state["gaps"])
        views.last_at = state["last_at"]
        views.period = state["period"]
        if views.period > 0:
            views.past = deque(state["past"], maxlen=views.period * views.config.seasonal_days)
        return views
