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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from tunelytics.domain.monitoring import kernels
from tunelytics.domain.monitoring.window import SortedWindow

# The evidence scale (defined with the compiled loops, which need it as a global).
REFERENCE = kernels.REFERENCE
RECORD = kernels.RECORD
# Fewer points than this go point by point: a vectorised step has a fixed cost of about
# 0.6 ms (NAB series, compiled: batches of 4 / 8 / 12 / 16 / 32 points scored
# at 134 / 68 / 47 / 36 / 19 us a point vectorised, 52 point by point).
SMALL = 12
# Values beyond this size may overflow a sum of differences; such a series is scored
# point by point, where overflow has its defined results.
LARGE = 1e150


def tail_rank(view: float, history: SortedWindow, spread_quantile: float | None = None) -> float:
    """Rank of `view` in its history, scaled to [0, 0.99]; beyond the largest seen, how far
    beyond in (0.99, 1] (so the most extreme points of different series stay ordered
    instead of all scoring 1): as a ratio to the largest, or, with `spread_quantile`, in
    units of the gap between the largest and that quantile of the history (a heavy tail
    has a wide gap, so a small excess over its record counts for less)."""
    rank = history.rank(view)
    s = history.sorted
    top = s[-1]
    if view <= top or top <= 0:
        return rank * 0.99
    return _beyond(view, s, spread_quantile)


def _beyond(view: float, s: list[float], spread_quantile: float | None) -> float:
    """`tail_rank` of a `view` above the largest of the sorted history `s` (positive)."""
    top = s[-1]
    if spread_quantile is None:
        excess = view / top - 1 if math.isfinite(view / top) else math.inf
    else:
        gap = max(top - s[int(spread_quantile * (len(s) - 1))], 1e-12 * top)
        excess = (view - top) / gap if math.isfinite(view - top) else math.inf
    return 0.99 + 0.01 * (1 - math.exp(-excess))


def tail_rank_many(
    views: np.ndarray, history: SortedWindow, warmup: int, spread_quantile: float | None = None
) -> np.ndarray:
    """`tail_rank(views[i], history)` then `history.add(views[i])` for each i in order,
    where the history holds `warmup` views or more; -1 where it did not yet. Compiled
    (`kernels.tail_ranks`: counts in a Fenwick tree, O(log n) a view); `views` hold no
    NaN (each detector maps NaN to inf or 0 before ranking)."""
    merged = history.merged(views)
    ranks = kernels.tail_ranks(
        merged,
        np.argsort(merged),
        len(history),
        history.size,
        warmup,
        -1.0 if spread_quantile is None else spread_quantile,
    )
    history.slide(merged)
    return ranks


def surprise(rank: float) -> float:
    """A calibrated rank (`tail_rank`) as evidence in nats, -ln(tail probability): ranks
    below 0.99 by their share of the history above them, a record by ln(REFERENCE) plus its
    excess. Evidence adds and subtracts where ranks do not (see `RobustViews`)."""
    if rank < 0.99:
        return -math.log(1 - rank / 0.99 * (1 - 1 / REFERENCE))
    return RECORD - math.log(max(1 - (rank - 0.99) / 0.0100001, 1e-300))


def from_surprise(nats: float) -> float:
    """The inverse of `surprise`: evidence back on the rank scale (0.99 = a record)."""
    if nats < RECORD:
        return 0.99 * (1 - math.exp(-max(nats, 0.0))) / (1 - 1 / REFERENCE)
    return min(0.99 + 0.0100001 * (1 - math.exp(RECORD - nats)), 1.0)


def discounted_many(ranks: np.ndarray, nats: float) -> np.ndarray:
    """`from_surprise(surprise(rank) - nats)` of each rank, compiled with the C library's
    logarithm and exponential, those of `math` (numpy's need not match them to the last
    bit)."""
    return kernels.discounted(ranks, nats)


def split_batch(
    count: int,
    warming: Callable[[], bool],
    one: Callable[[int], float],
    steady: Callable[[int], np.ndarray],
) -> np.ndarray:
    """The batched form shared by the detectors: point `i` by `one(i)` while `warming()`
    (the state a vectorised step needs is not there yet), then the rest by `steady(start)`
    at once, or point by point again when fewer than SMALL points are left."""
    out = np.zeros(count)
    i = 0
    while i < count and warming():
        out[i] = one(i)
        i += 1
    if count - i >= SMALL:
        out[i:] = steady(i)
    else:
        for k in range(i, count):
            out[k] = one(k)
    return out


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
    # A record counts by its excess in units of (record - 98th percentile) of the history
    # (NAB dev: 58.9 as a ratio to the record, 60.8 this way).
    spread_quantile: float = 0.98


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
                score = tail_rank(distance, self.distances, c.spread_quantile)
            self.distances.add(distance)
        self.recent.append(value)
        self.pending.append(context)
        if len(self.pending) > c.gap:
            self.contexts[:, self.stored % c.memory] = self.pending.popleft()
            self.stored += 1
        return score

    def learn_one(self, value: float) -> None:
        self.score_one(value)

    def score_many(self, values: np.ndarray) -> np.ndarray:
        """`score_one` over finite `values`, in order: the same scores and state."""
        c = self.config

        return split_batch(
            len(values),
            lambda: len(self.recent) < c.length - 1 or self.stored < c.min_memory,
            lambda i: self.score_one(float(values[i])),
            lambda start: self._score_searched(values[start:]),
        )

    def _score_searched(self, values: np.ndarray) -> np.ndarray:
        """A batch once the memory is searched: the nearest distances of all its contexts
        at once (`kernels.nearest`), against the values the ring and the pending contexts hold."""
        c, b, length = self.config, len(values), self.config.length
        held = min(self.stored, c.memory)
        slots = (self.stored - held + np.arange(held)) % c.memory
        known = np.concatenate([self.contexts[:, slots].T, np.array(self.pending)])
        y = np.concatenate([known[0], known[1:, -1], values])
        if not np.abs(y).max() <= LARGE or length < 2:
            return np.array([self.score_one(v) for v in values.tolist()])
        h = len(y) - b
        distances = kernels.nearest(y, h, c.memory, c.gap, length)
        scores = tail_rank_many(distances, self.distances, c.warmup, c.spread_quantile)
        # The pending contexts and the batch's own, oldest first: all but the newest `gap`
        # move into the ring.
        queue = sliding_window_view(y, length)[h - c.gap - length + 1 : h + b - length + 1]
        moved = queue[max(0, b - c.memory) : b]
        self.contexts[
            :, (self.stored + max(0, b - c.memory) + np.arange(len(moved))) % c.memory
        ] = moved.T
        self.pending = deque(row.copy() for row in queue[b:])
        self.recent.extend(values[-(length - 1) :].tolist())
        self.stored += b
        return np.maximum(scores, 0.0)

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
