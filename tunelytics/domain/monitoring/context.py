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
import threading
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from tunelytics.domain.monitoring.window import SortedWindow

# The evidence scale: a record of the last REFERENCE points is worth ln(REFERENCE) nats.
REFERENCE = 800
RECORD = math.log(REFERENCE)
# Contexts searched per vectorised step: its work arrays hold (CHUNK + length) x memory
# values, a few MB, about what the caches hold.
CHUNK = 256
# Fewer points than this go point by point: a vectorised step has a fixed cost of some
# hundred microseconds (NAB dev: batches of 1 / 4 / 16 / 64 points scored at 640 / 180 /
# 62 / 34 us a point vectorised, 50 point by point).
SMALL = 32
# Values beyond this size may overflow a sum of differences; such a series is scored
# point by point, where overflow has its defined results.
LARGE = 1e150
# Work arrays of `_nearest`, kept per thread: fresh ones of a few MB per batch cost more in
# page faults than the arithmetic in them.
_scratch = threading.local()


def _work(rows: int, columns: int) -> tuple[np.ndarray, np.ndarray]:
    have = getattr(_scratch, "arrays", None)
    if have is None or have[0].shape[0] < rows or have[0].shape[1] != columns:
        have = _scratch.arrays = (np.empty((rows, columns)), np.empty((rows, columns)))
    return have[0][:rows], have[1][:rows]


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
    where the history holds `warmup` views or more; -1 where it did not yet. A plain loop
    with the window's steps inline: vectorised counts over sliding windows (sorted blocks,
    or triangular comparisons per batch) cost more than these bisections."""
    out: list[float] = []
    s, size = history.sorted, history.size
    oldest, newest = history.order.popleft, history.order.append
    for view in views.tolist():
        n = len(s)
        below = above = bisect_left(s, view)
        if below < n and s[below] == view:
            above = bisect_right(s, view, below)
        if n < warmup:
            out.append(-1.0)
        elif below == n and s[-1] > 0:  # above every value: a record
            out.append(_beyond(view, s, spread_quantile))
        else:
            out.append((below + 0.5 * (above - below)) / n * 0.99)
        # history.add(view), with the insertion point known already
        if n == size:
            gone = bisect_left(s, oldest())
            del s[gone]
            above -= gone < above
        newest(view)
        s.insert(above, view)
    return np.array(out)


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
    """`from_surprise(surprise(rank) - nats)` of each rank, with `math`'s logarithm and
    exponential (numpy's need not match them to the last bit). Ranks whose surprise is
    clearly below `nats` map to exactly 0 (`from_surprise` of a negative); numpy's
    logarithm, off by an ulp at most, only picks them out."""
    with np.errstate(divide="ignore", invalid="ignore"):
        rough = -np.log(1 - ranks / 0.99 * (1 - 1 / REFERENCE))
    out = np.zeros(len(ranks))
    for i in np.flatnonzero(~((ranks < 0.99) & (rough < nats - 1e-9))).tolist():
        out[i] = from_surprise(surprise(float(ranks[i])) - nats)
    return out


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


def _nearest(y: np.ndarray, start: int, memory: int, gap: int, length: int) -> np.ndarray:
    """For each context of `y` (`length` values) ending at y[start:], the L1 distance to
    the nearest of the contexts `gap + 1` to `gap + memory` points before it that lie in
    `y`: bit for bit `ContextNovelty.score_one`'s sum.

    Along the lags: one difference per value and lag, their sums of `length` shared by
    doubling, then the exact sum in `score_one`'s order (the oldest term first) for the
    lags within rounding of the nearest. Sums of `length` non-negative terms in any order
    lie within `length` x eps of the exact sum, so the exact nearest is among those."""
    reach = gap + memory
    b, first = len(y) - start, start - length + 1
    # Values before `y` are +inf: their lags are never the nearest.
    padded = np.concatenate([np.full(reach, np.inf), y])
    # terms[r, m] = |y[q] - y[q - lag]| for q = first + r, lag = reach - m.
    terms, sums = _work(len(y) - first, memory)
    np.subtract(sliding_window_view(padded, memory)[first : len(y)], y[first:, None], out=terms)
    np.abs(terms, out=terms)
    width, n = 1, len(terms)
    sums[:] = terms
    while width * 2 <= length:
        np.add(sums[: n - width], sums[width:n], out=sums[: n - width])
        n, width = n - width, width * 2
    approx = sums[:b]
    if width < length:  # not a power of two: add the remaining blocks plainly
        approx = approx.copy()
        for k in range(width, length):
            approx += terms[k : k + b]
    best = approx.min(axis=1)
    near = approx <= best[:, None] * (1 + 8 * length * np.finfo(float).eps)
    count = near.sum(axis=1)
    single = count == 1
    at = np.arange(b)
    cols = np.where(single, approx.argmin(axis=1), 0)
    exact = terms[at, cols]
    for k in range(1, length):
        exact = exact + terms[at + k, cols]
    distances = np.where(best == 0, 0.0, exact)  # a sum of zeros, in any order
    tied = np.flatnonzero(~single & (best > 0))
    if len(tied):
        which, lags = np.nonzero(near[tied])
        rows = tied[which]
        total = terms[rows, lags]
        for k in range(1, length):
            total = total + terms[rows + k, lags]
        distances[tied] = np.minimum.reduceat(total, np.searchsorted(which, np.arange(len(tied))))
    return distances


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

        def steady(start: int) -> np.ndarray:
            steps = -(-(len(values) - start) // CHUNK)  # even steps: no small one at the end
            bounds = np.linspace(start, len(values), steps + 1).astype(int).tolist()
            return np.concatenate([self._score_searched(values[a:b]) for a, b in pairwise(bounds)])

        return split_batch(
            len(values),
            lambda: len(self.recent) < c.length - 1 or self.stored < c.min_memory,
            lambda i: self.score_one(float(values[i])),
            steady,
        )

    def _score_searched(self, values: np.ndarray) -> np.ndarray:
        """A batch once the memory is searched: the nearest distances of all its contexts
        at once (`_nearest`), against the values the ring and the pending contexts hold."""
        c, b, length = self.config, len(values), self.config.length
        held = min(self.stored, c.memory)
        slots = (self.stored - held + np.arange(held)) % c.memory
        known = np.concatenate([self.contexts[:, slots].T, np.array(self.pending)])
        y = np.concatenate([known[0], known[1:, -1], values])
        if not np.abs(y).max() <= LARGE:
            return np.array([self.score_one(v) for v in values.tolist()])
        h = len(y) - b
        distances = _nearest(y, h, c.memory, c.gap, length)
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
