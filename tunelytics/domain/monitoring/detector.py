"""A streaming anomaly detector per series: causal, with explicit serialisable state.

Four views of each point, each a robust z-score against its own recent past: the value
against the recent level (spikes, level shifts), the step from the previous point (sudden
jumps), the mean of the last few points against the level (drifts, sustained shifts), and,
once the sampling interval and a few days are known, the residual from the same time on
previous days (changed daily rhythm). Each view is calibrated into a tail probability by
ranking it among its own recent history, so one threshold fits every series; the score is
the strongest view. A detection is reported once: after a high score the detector stays
quiet for a while unless the evidence grows.

>>> d = SeriesDetector()
>>> scores = [d.score_one(float(x % 7)) for x in range(400)] + [d.score_one(60.0)]
>>> scores[-1] > 0.99 > max(scores[300:400])
True
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

from tunelytics.domain.monitoring.window import SortedWindow

DAY = 86_400.0
VIEWS = 4


@dataclass(frozen=True)
class DetectorConfig:
    level_window: int = 300
    history_window: int = 1500
    short_mean: int = 6
    warmup: int = 30
    quiet_period: int = 60
    quiet_damping: float = 0.5
    # Daily rhythm: how many past days the seasonal reference takes its median over.
    seasonal_days: int = 7
    # Points whose spacing gives the sampling interval (their median).
    interval_sample: int = 20


def _robust_z(value: float, window: SortedWindow, spread_floor: float) -> float:
    """Distance from the median in robust standard deviations (the interquartile range
    read straight off the sorted window: O(1), unlike a MAD)."""
    s, n = window.sorted, len(window.sorted)
    spread = (s[(3 * n) // 4] - s[n // 4]) / 1.349
    return abs(value - window.median()) / max(spread, spread_floor)


def _tail(view: float, history: SortedWindow) -> float:
    """Rank of `view` in its history; beyond the largest seen, how far beyond (so the most
    extreme points of different series stay ordered instead of all scoring 1)."""
    rank = history.rank(view)
    top = history.sorted[-1]
    if view <= top or top <= 0:
        return rank * 0.99
    return 0.99 + 0.01 * (1 - math.exp(-(view / top - 1)))


class SeriesDetector:
    def __init__(self, config: DetectorConfig | None = None) -> None:
        self.config = c = config or DetectorConfig()
        self.levels = SortedWindow(c.level_window)
        self.steps = SortedWindow(c.level_window)
        self.residuals = SortedWindow(c.level_window)
        self.recent: deque[float] = deque(maxlen=c.short_mean)
        self.histories = [SortedWindow(c.history_window) for _ in range(VIEWS)]
        self.previous: float | None = None
        self.seen = 0
        self.last_alarm = -(10**9)
        self.last_alarm_score = 0.0
        # Sampling interval, learned from the first timestamps; then the points per day.
        self.gaps: list[float] = []
        self.last_at: float | None = None
        self.period = 0
        self.past: deque[float] = deque()

    def score_one(self, value: float, at: float | None = None) -> float:
        """Score `value` (observed at `at`, epoch seconds, if known) against the past, then
        learn it. Never uses later points."""
        c = self.config
        if not math.isfinite(value):
            return 0.0
        self.seen += 1
        self._learn_interval(at)
        seasonal = self._seasonal_residual(value)
        score = 0.0
        if len(self.levels) >= c.warmup and self.previous is not None:
            floor = 1e-9 + 1e-6 * abs(self.levels.median())
            self.recent.append(value)
            views = [
                _robust_z(value, self.levels, floor),
                _robust_z(value - self.previous, self.steps, floor),
                _robust_z(sum(self.recent) / len(self.recent), self.levels, floor),
            ]
            if seasonal is not None and len(self.residuals) >= c.warmup:
                views.append(_robust_z(seasonal, self.residuals, floor))
            ranks = []
            for view, history in zip(views, self.histories, strict=False):
                ranks.append(_tail(view, history) if len(history) >= c.warmup else 0.5)
                history.add(view)
            score = max(ranks)
        else:
            self.recent.append(value)
        score = self._once(score)
        if self.previous is not None:
            self.steps.add(value - self.previous)
        if seasonal is not None:
            self.residuals.add(seasonal)
        self.levels.add(value)
        if self.period:
            self.past.append(value)
        self.previous = value
        return score

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

    def _once(self, score: float) -> float:
        """Report an anomaly once: within the quiet period only stronger evidence shows."""
        c = self.config
        recently_alarmed = self.seen - self.last_alarm < c.quiet_period
        if recently_alarmed and score <= self.last_alarm_score:
            return score * c.quiet_damping
        if score > 0.99:
            self.last_alarm = self.seen
            self.last_alarm_score = score
        return score

    @classmethod
    def from_state(
        cls, state: dict[str, Any], config: DetectorConfig | None = None
    ) -> SeriesDetector:
        detector = cls(config)
        detector.levels = SortedWindow.from_state(state["levels"])
        detector.steps = SortedWindow.from_state(state["steps"])
        detector.residuals = SortedWindow.from_state(state["residuals"])
        detector.recent.extend(state["recent"])
        detector.histories = [SortedWindow.from_state(h) for h in state["histories"]]
        detector.previous = state["previous"]
        detector.seen = state["seen"]
        detector.last_alarm = state["last_alarm"]
        detector.last_alarm_score = state["last_alarm_score"]
        detector.gaps = list(state["gaps"])
        detector.last_at = state["last_at"]
        detector.period = state["period"]
        if detector.period > 0:
            detector.past = deque(
                state["past"], maxlen=detector.period * detector.config.seasonal_days
            )
        return detector

    def state(self) -> dict[str, Any]:
        return {
            "levels": self.levels.state(),
            "steps": self.steps.state(),
            "residuals": self.residuals.state(),
            "recent": list(self.recent),
            "histories": [h.state() for h in self.histories],
            "previous": self.previous,
            "seen": self.seen,
            "last_alarm": self.last_alarm,
            "last_alarm_score": self.last_alarm_score,
            "gaps": self.gaps,
            "last_at": self.last_at,
            "period": self.period,
            "past": list(self.past),
        }
