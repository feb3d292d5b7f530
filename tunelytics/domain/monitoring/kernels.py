"""Compiled (numba) loops of the detectors' batched scoring: the same steps as their
pure-Python `score_one`, with the same floating-point operations in the same order, so the
scores are bit for bit the same.

A sorted window's ranks and quartiles come from counts per distinct value (the batch's
values are all known beforehand: no view depends on a score): ranks from a Fenwick tree,
O(log n) a view where a sorted array moves hundreds of values; quartiles as order
statistics that move by one value at most per step. `math.log`/`math.exp` compile to calls
of the C library's `log`/`exp`, those Python's `math` calls (numpy's own need not match
them to the last bit). Compiled on first use, or loaded from numba's on-disk cache:
`warm_up` does either ahead of time, for the server in a thread at start.
"""

from __future__ import annotations

import math
import time

import numpy as np
from numba import njit

# The evidence scale: a record of the last REFERENCE points is worth ln(REFERENCE) nats.
REFERENCE = 800
RECORD = math.log(REFERENCE)


@njit(cache=True, nogil=True)
def compress(values: np.ndarray, perm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each of `values` (no NaN) as the index of its value among the distinct ones, given
    `perm`, an argsort of them; and the distinct values, ascending. Equal values (0.0 and
    -0.0 too) share one index, as they share one place in a bisection."""
    ids = np.empty(len(values), dtype=np.int64)
    distinct = np.empty(len(values))
    m = 0
    for j in range(len(perm)):
        v = values[perm[j]]
        if m == 0 or v != distinct[m - 1]:
            distinct[m] = v
            m += 1
        ids[perm[j]] = m - 1
    return ids, distinct[:m]


@njit(cache=True, nogil=True)
def _fenwick(ids: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """A Fenwick tree (1-based) of the counts of `ids` among m indexes, and the counts."""
    count = np.zeros(m, dtype=np.int64)
    for i in ids:
        count[i] += 1
    tree = np.zeros(m + 1, dtype=np.int64)
    tree[1:] = count
    for i in range(1, m + 1):
        j = i + (i & -i)
        if j <= m:
            tree[j] += tree[i]
    return tree, count


@njit(cache=True, nogil=True)
def _update(tree: np.ndarray, i: int, change: int) -> None:
    i += 1
    while i < len(tree):
        tree[i] += change
        i += i & -i


@njit(cache=True, nogil=True)
def _below(tree: np.ndarray, i: int) -> int:
    """How many of the values counted have an index below i."""
    total = 0
    while i > 0:
        total += tree[i]
        i &= i - 1
    return total


@njit(cache=True, nogil=True)
def _kth(tree: np.ndarray, k: int) -> int:
    """The index of the k-th smallest value counted (from 0)."""
    at, step = 0, 1
    while step * 2 < len(tree):
        step *= 2
    while step:
        ahead = at + step
        if ahead < len(tree) and tree[ahead] <= k:
            at = ahead
            k -= tree[ahead]
        step >>= 1
    return at


@njit(cache=True, nogil=True)
def tail_ranks(
    order: np.ndarray,
    perm: np.ndarray,
    n: int,
    size: int,
    warmup: int,
    spread_quantile: float,
) -> np.ndarray:
    """`context.tail_rank_many`: `order` holds the window's n values oldest first, then the
    views; `perm` is an argsort of it. The calibrated rank of each view in the window as it
    stood (-1 before `warmup` values), then the view added. A negative `spread_quantile`
    means none. Ranks come from a Fenwick tree of counts per distinct value: O(log n) a
    view, where a sorted array moves hundreds of values."""
    ids, distinct = compress(order, perm)
    head, first = 0, n
    tree, count = _fenwick(ids[:n], len(distinct))
    out = np.empty(len(order) - n)
    for i in range(len(out)):
        at = ids[first + i]
        view = order[first + i]
        below = _below(tree, at)
        top = distinct[_kth(tree, n - 1)] if below == n and n > 0 else 0.0
        if n < warmup:
            out[i] = -1.0
        elif top > 0:  # above every value (the largest positive): a record
            if spread_quantile < 0:
                ratio = view / top
                excess = ratio - 1 if math.isfinite(ratio) else math.inf
            else:
                gap = top - distinct[_kth(tree, int(spread_quantile * (n - 1)))]
                floor = 1e-12 * top
                if floor > gap:  # max(gap, floor): the first argument on ties
                    gap = floor
                excess = (view - top) / gap if math.isfinite(view - top) else math.inf
            out[i] = 0.99 + 0.01 * (1 - math.exp(-excess))
        else:
            out[i] = (below + 0.5 * count[at]) / n * 0.99
        if n == size:
            gone = ids[head]
            _update(tree, gone, -1)
            count[gone] -= 1
            head += 1
        else:
            n += 1
        _update(tree, at, 1)
        count[at] += 1
    return out


@njit(cache=True, nogil=True)
def _seek(count: np.ndarray, at: int, below: int, k: int) -> tuple[int, int]:
    """Move an order statistic's index `at` (with `below` values under it) to the k-th
    smallest value: a step to the next value held either way, usually none or one."""
    while k < below:
        at -= 1
        while count[at] == 0:
            at -= 1
        below -= count[at]
    while k >= below + count[at]:
        below += count[at]
        at += 1
        while count[at] == 0:
            at += 1
    return at, below


@njit(cache=True, nogil=True)
def quartiles(
    order: np.ndarray, perm: np.ndarray, n: int, size: int, counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`SortedWindow.quartiles_many`: `order` holds the window's n values oldest first,
    then those added, `perm` an argsort of it; the median and quartiles after the first
    `counts[i]` of them are added (`counts` ascending). Each order statistic is followed
    as the window moves (one value out, one in: it moves by one value at most)."""
    ids, distinct = compress(order, perm)
    count = np.zeros(len(distinct), dtype=np.int64)
    for i in range(n):
        count[ids[i]] += 1
    # Followed statistics, each an index and the count of values under it: sorted[n // 4],
    # sorted[n // 2 - 1], sorted[n // 2], sorted[(3 * n) // 4].
    at = np.zeros(4, dtype=np.int64)
    below = np.zeros(4, dtype=np.int64)
    median, low, high = np.empty(len(counts)), np.empty(len(counts)), np.empty(len(counts))
    head, done, first = 0, 0, n
    for i in range(len(counts)):
        while done < counts[i]:
            new = ids[first + done]
            if n == size:
                gone = ids[head]
                count[gone] -= 1
                for t in range(4):
                    below[t] -= gone < at[t]
                head += 1
            else:
                n += 1
            count[new] += 1
            for t in range(4):
                below[t] += new < at[t]
            done += 1
        for t, k in enumerate((n // 4, max(n // 2 - 1, 0), n // 2, (3 * n) // 4)):
            at[t], below[t] = _seek(count, at[t], below[t], k)
        middle = distinct[at[2]]
        median[i] = middle if n % 2 else 0.5 * (distinct[at[1]] + middle)
        low[i] = distinct[at[0]]
        high[i] = distinct[at[3]]
    return median, low, high


@njit(cache=True, nogil=True)
def _surprise(rank: float) -> float:
    if rank < 0.99:
        return -math.log(1 - rank / 0.99 * (1 - 1 / REFERENCE))
    return RECORD - math.log(max(1 - (rank - 0.99) / 0.0100001, 1e-300))


@njit(cache=True, nogil=True)
def _from_surprise(nats: float) -> float:
    if nats < RECORD:
        return 0.99 * (1 - math.exp(-max(nats, 0.0))) / (1 - 1 / REFERENCE)
    return min(0.99 + 0.0100001 * (1 - math.exp(RECORD - nats)), 1.0)


@njit(cache=True, nogil=True)
def discounted(ranks: np.ndarray, nats: float) -> np.ndarray:
    """`context.discounted_many`: `from_surprise(surprise(rank) - nats)` of each rank."""
    out = np.empty(len(ranks))
    for i in range(len(ranks)):
        out[i] = _from_surprise(_surprise(ranks[i]) - nats)
    return out


@njit(cache=True, nogil=True)
def _sum_least(approx: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    """approx += lower + upper, returning the least sum: in four independent minimums (one
    running minimum waits on each comparison; numba does not vectorise it)."""
    b0 = b1 = b2 = b3 = math.inf
    n = len(approx) // 4 * 4
    for m in range(0, n, 4):
        a0 = approx[m] + (lower[m] + upper[m])
        a1 = approx[m + 1] + (lower[m + 1] + upper[m + 1])
        a2 = approx[m + 2] + (lower[m + 2] + upper[m + 2])
        a3 = approx[m + 3] + (lower[m + 3] + upper[m + 3])
        approx[m], approx[m + 1], approx[m + 2], approx[m + 3] = a0, a1, a2, a3
        b0 = a0 if a0 < b0 else b0
        b1 = a1 if a1 < b1 else b1
        b2 = a2 if a2 < b2 else b2
        b3 = a3 if a3 < b3 else b3
    best = min(min(b0, b1), min(b2, b3))
    for m in range(n, len(approx)):
        approx[m] += lower[m] + upper[m]
        best = min(best, approx[m])
    return best


@njit(cache=True, nogil=True)
def nearest(y: np.ndarray, start: int, memory: int, gap: int, length: int) -> np.ndarray:
    """`context._nearest` (`length` 2 or more): for each context of `y` ending at
    y[start:], the L1 distance to the nearest of the contexts `gap + 1` to `gap + memory`
    points before it.

    A point at a time, in rings of rows (one value per lag) that stay in cache: the terms
    |y[q - lag] - y[q]|, their sums over 2, 4, 8, ... points by doubling, the window's sum
    from those blocks; then the exact sum in `score_one`'s order (oldest term first) for
    the lags within rounding of the nearest (sums of `length` non-negative terms in any
    order lie within `length` x eps of the exact sum)."""
    reach = gap + memory
    b, first = len(y) - start, start - length + 1
    levels = 1  # block sizes 1, 2, ..., 2**(levels - 1) <= length
    while (1 << levels) <= length:
        levels += 1
    # rings[j, q % length]: the sums of 2**j terms ending at q (the largest is not kept).
    # Sums reaching before y[first] are never read for a context (no zeroing needed).
    rings = np.empty((levels - 1, length, memory))
    approx = np.empty(memory)
    out = np.empty(b)
    tolerance = 1 + 8 * length * np.finfo(np.float64).eps
    half = 1 << (levels - 2)
    for q in range(first, len(y)):
        row = q % length
        terms = rings[0, row]
        current = y[q]
        held = max(reach - q, 0)  # lags reaching before y: never the nearest
        terms[:held] = math.inf
        past = y[q + held - reach : q + memory - reach]
        for m in range(memory - held):
            terms[held + m] = abs(past[m] - current)
        for j in range(1, levels - 1):
            lower, upper = rings[j - 1, (q - (1 << (j - 1))) % length], rings[j - 1, row]
            into = rings[j, row]
            for m in range(memory):
                into[m] = lower[m] + upper[m]
        if q < start:
            continue
        # The window's sum: the smaller blocks at its start, then the largest two halves.
        approx[:] = 0.0
        end = q - 2 * half
        for j in range(levels - 2, -1, -1):
            if length & (1 << j):
                block = rings[j, end % length]
                for m in range(memory):
                    approx[m] += block[m]
                end -= 1 << j
        best = _sum_least(approx, rings[levels - 2, (q - half) % length], rings[levels - 2, row])
        if best == 0:  # a sum of zeros, in any order
            out[q - start] = 0.0
            continue
        bound = best * tolerance
        distance = math.inf
        for m in range(memory):
            if approx[m] <= bound:
                exact = rings[0, (q - length + 1) % length, m]
                for k in range(1, length):
                    exact = exact + rings[0, (q - length + 1 + k) % length, m]
                distance = min(distance, exact)
        out[q - start] = distance
    return out


@njit(cache=True, nogil=True)
def alarm_once(
    scores: np.ndarray,
    seen: int,
    last_alarm: int,
    last_alarm_score: float,
    last_loud: int,
    quiet_period: int,
    quiet_damping: float,
    alarm_level: float,
    alarm_quiet: int,
) -> tuple[np.ndarray, int, int, float, int]:
    """`SeriesDetector._once` over `scores` in order, each point counted into `seen`;
    returns the reported scores and the state after them."""
    out = np.empty(len(scores))
    for i in range(len(scores)):
        seen += 1
        score = scores[i]
        if seen - last_loud < alarm_quiet:
            out[i] = score * quiet_damping
            continue
        if seen - last_alarm < quiet_period and score <= last_alarm_score:
            out[i] = score * quiet_damping
            continue
        if score > 0.99:
            last_alarm = seen
            last_alarm_score = score
        if score >= alarm_level:
            last_loud = seen
        out[i] = score
    return out, seen, last_alarm, last_alarm_score, last_loud


def warm_up() -> float:
    """Compile (or load from the cache) every kernel on tiny inputs; returns the seconds it
    took. Run it off the event loop: a first compile takes seconds."""
    started = time.perf_counter()
    order = np.array([0.0, 1.0, 2.0])
    perm = np.argsort(order)
    tail_ranks(order, perm, 1, 2, 1, 0.98)
    quartiles(order, perm, 1, 2, np.ones(1, dtype=np.int64))
    discounted(np.array([0.5, 0.995]), 1.0)
    nearest(np.arange(12.0), 10, 4, 2, 3)
    alarm_once(np.array([0.5, 0.995]), 0, -(10**9), 0.0, -(10**9), 60, 0.5, 0.9935, 100)
    return time.perf_counter() - started
