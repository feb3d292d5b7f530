"""Context novelty: how far the shape of the last few points is from every shape seen before.

The context is the last `length` values. Its novelty is the L1 distance to the nearest
context among the previous `memory` ones (the newest `gap` are left out: they overlap the
current one and would always be near). A level shift, a new rhythm, a burst of spikes or a
flat stretch in a lively series all make contexts that have no near neighbour. The distance
is calibrated by its rank among the distances this series produced lately (see
`tail_rank`), so one threshold fits series of any scale. The idea follows KNN-CAD on NAB.

>>> import math
>>> d = ContextNovelty()
>>> calm = [d.score_one(math.sin(i / 5)) for i in range(1500)]
>>> d.score_one(5.0) > 0.99 > max(calm[1200:])
True
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from tunelytics.domain.monitoring.window import SortedWindow


def tail_rank(view: float, history: SortedWindow) -> float:
    """Rank of `view` in its history, scaled to [0, 0.99]; beyond the largest seen, how far
    beyond in (0.99, 1] (so the most extreme points of different series stay ordered
    instead of all scoring 1)."""
    rank = history.rank(view)
    top = history.sorted[-1]
    if view <= top or top <= 0:
        return rank * 0.99
    ratio = view / top if math.isfinite(view / top) else math.inf
    return 0.99 + 0.01 * (1 - math.exp(-(ratio - 1)))


@dataclass(frozen=True)
class ContextConfig:
    length: int = 16
    memory: int = 1000
    gap: int = 8
    # Contexts searched before a distance means anything, and distances before ranking.
    min_memory: int = 100
    warmup: int = 30
    # A short calibration history (NAB dev: 800 scored 59, 1,500 scored 55, 500 scored 57):
    # novelty is judged against the recent past, so an old burst does not mask a new one.
    history: int = 800


class ContextNovelty:
    def __init__(self, config: ContextConfig | None = None) -> None:
        self.config = c = config or ContextConfig()
        self.recent: deque[float] = deque(maxlen=c.length - 1)  # what precedes the next value
        self.pending: deque[np.ndarray] = deque()  # the newest contexts, not searched yet
        # One context per column: the distance is then a sum over rows, the fast direction.
        self.contexts = np.zeros((c.length, c.memory))
        self._scratch = np.empty((c.length, c.memory))
        self.stored = 0  # contexts ever moved into `contexts` (ring position = stored % memory)
        self.distances = SortedWindow(c.history)

    def score_one(self, value: float) -> float:
        """Novelty of the context ending at `value`, then learn it."""
        c = self.config
        if len(self.recent) < c.length - 1:
            self.recent.append(value)
            return 0.0
        context = np.array([*self.recent, value])
        score = 0.0
        if self.stored >= c.min_memory:
            held = min(self.stored, c.memory)
            diff = self._scratch[:, :held]
            with np.errstate(over="ignore", invalid="ignore"):  # huge values: inf, not NaN
                np.subtract(self.contexts[:, :held], context[:, None], out=diff)
                distance = float(np.abs(diff, out=diff).sum(axis=0).min())
            if math.isnan(distance):
                distance = math.inf
            if len(self.distances) >= c.warmup:
                score = tail_rank(distance, self.distances)
            self.distances.add(distance)
        self.recent.append(value)
        self.pending.append(context)
        if len(self.pending) > c.gap:
            self.contexts[:, self.stored % c.memory] = self.pending.popleft()
            self.stored += 1
        return score

    def learn_one(self, value: float) -> None:
        self.score_one(value)

    def state(self) -> dict[str, Any]:
        c = self.config
        held = min(self.stored, c.memory)
        # Oldest first, so a restore refills the ring in the same slots.
        order = [(self.stored - held + k) % c.memory for k in range(held)]
        return {
            "recent": list(self.recent),
            "pending": [p.tolist() for p in self.pending],
            "contexts": self.contexts[:, order].T.tolist(),
            "stored": self.stored,
            "distances": self.distances.state(),
        }

    @classmethod
    def from_state(
        cls, state: dict[str, Any], config: ContextConfig | None = None
    ) -> ContextNovelty:
        detector = cls(config)
        c = detector.config
        detector.recent.extend(state["recent"])
        detector.pending.extend(np.array(p, dtype=float) for p in state["pending"])
        detector.stored = state["stored"]
        held = min(detector.stored, c.memory)
        for k, row in enumerate(state["contexts"]):
            detector.contexts[:, (detector.stored - held + k) % c.memory] = row
        detector.distances = SortedWindow.from_state(state["distances"])
        return detector
