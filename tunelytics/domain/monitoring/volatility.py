"""Volatility: how restless the series has been lately, against its own recent past.

The views are the mean absolute step over the last `spans` points (16 and 32); each is
calibrated by its tail rank among the views of its span this series produced lately
(`tail_rank`), like context novelty, so one threshold fits series of any scale; the score
is the stronger of the two. It sees what the other detectors
judge point by point and so miss: a calm series that starts to oscillate (a changed
rhythm made of values inside the usual range) or a busier stretch of a daily pattern,
both as a run of ordinary-sized steps that together make a record.

>>> import math
>>> d = Volatility()
>>> calm = [d.score_one(math.sin(i / 20)) for i in range(1500)]
>>> restless = [d.score_one(math.sin(i / 20) + (-1) ** i) for i in range(1500, 1540)]
>>> max(restless) > 0.99 > max(calm[1200:])
True
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from itertools import islice
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


@dataclass(frozen=True)
class VolatilityConfig:
    # NAB dev (with context novelty and robust views), one span: 24 / 32 / 48: 66.3-69.5
    # with histories 1,000-2,000 (1,500 and 32 the best); spans 16 and 32: 70.4, 8 and 32:
    # 70.4, 12 and 32: 69.0, 20 and 32: 70.1, 16 and 48: 69.8 (the threshold moves a little
    # with each, and detections near it move with it).
    spans: tuple[int, ...] = (16, 32)
    history: int = 1500
    # Views before ranking: each overlaps the next `span` steps, so a few hundred views are
    # only a few dozen independent ones, and a record among them is weak evidence (i.i.d.
    # noise alarmed at its 344th point with 30); NAB dev scores the same for 30 to 600.
    warmup: int = 400
    spread_quantile: float = 0.98
    # More chances to find something: ln 2 nats (NAB dev, span 32, spread quantile 0.99:
    # 67.6 without, 69.7 with ln 2, 68.4 with ln 4; spans 16 and 32: 70.4 with ln 2, 67.1
    # with ln 3 or ln 4).
    discount: float = math.log(2)


class Volatility:
    def __init__(self, config: VolatilityConfig | None = None) -> None:
        self.config = c = config or VolatilityConfig()
        self.steps: deque[float] = deque(maxlen=max(c.spans))
        self.previous: float | None = None
        self.views = [SortedWindow(c.history) for _ in c.spans]

    def score_one(self, value: float) -> float:
        """Volatility of the last steps, ending at `value`, then learn it."""
        c = self.config
        previous, self.previous = self.previous, value
        if previous is None:
            return 0.0
        self.steps.append(abs(value - previous))  # float overflow is inf, not an error
        score = 0.0
        for span, views in zip(c.spans, self.views, strict=True):
            if len(self.steps) < span:
                continue
            # A plain sum each time, no running total: huge steps make inf, never inf - inf.
            view = sum(islice(reversed(self.steps), span)) / span
            if math.isnan(view):
                view = math.inf
            if len(views) >= c.warmup:
                score = max(score, tail_rank(view, views, c.spread_quantile))
            views.add(view)
        return from_surprise(surprise(score) - c.discount)

    def learn_one(self, value: float) -> None:
        self.score_one(value)

    def score_many(self, values: np.ndarray) -> np.ndarray:
        """`score_one` over finite `values`, in order: the same scores and state."""
        span = max(self.config.spans)
        return split_batch(
            len(values),
            lambda: len(self.steps) < span,
            lambda i: self.score_one(float(values[i])),
            lambda start: self._score_steady(values[start:]),
        )

    def _score_steady(self, values: np.ndarray) -> np.ndarray:
        """A batch once every span has its steps: the views of all its points at once, summed
        as `score_one` sums them (the newest step first), then ranked in their histories."""
        c, b = self.config, len(values)
        assert self.previous is not None
        if not max(max(self.steps), abs(self.previous), np.abs(values).max()) <= LARGE:
            return np.array([self.score_one(v) for v in values.tolist()])
        before = np.concatenate([[self.previous], values[:-1]])
        steps = np.concatenate(
            [np.fromiter(self.steps, float, len(self.steps)), np.abs(values - before)]
        )
        newest = len(steps) - b
        score = np.zeros(b)
        for span, views in zip(c.spans, self.views, strict=True):
            total = np.zeros(b)
            for k in range(span):
                total = total + steps[newest - k : len(steps) - k]
            ranks = tail_rank_many(total / span, views, c.warmup, c.spread_quantile)
            score = np.maximum(score, ranks)
        self.steps.extend(steps[-max(c.spans) :].tolist())
        self.previous = float(values[-1])
        return discounted_many(score, c.discount)

    def state(self) -> dict[str, Any]:
        return {
            "steps": list(self.steps),
            "previous": self.previous,
            "views": [v.state() for v in self.views],
        }

    @classmethod
    def from_state(
        cls, state: dict[str, Any], config: VolatilityConfig | None = None
    ) -> Volatility:
        detector = cls(config)
        detector.steps.extend(state["steps"])
        detector.previous = state["previous"]
        detector.views = [SortedWindow.from_state(v) for v in state["views"]]
        return detector
