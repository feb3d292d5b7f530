"""A sliding window that keeps its values sorted: rolling median, MAD and ranks in O(n)
memmove per point (n is a few hundred), with explicit, serialisable state."""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections import deque
from typing import Any

import numpy as np


class SortedWindow:
    """
    >>> w = SortedWindow(3)
    >>> for x in (5.0, 1.0, 3.0, 4.0): w.add(x)
    >>> w.median(), w.rank(3.5)
    (3.0, 0.6666666666666666)
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.order: deque[float] = deque()
        self.sorted: list[float] = []

    def __len__(self) -> int:
        return len(self.order)

    def add(self, value: float) -> None:
        if len(self.order) == self.size:
            old = self.order.popleft()
            del self.sorted[bisect_left(self.sorted, old)]
        self.order.append(value)
        insort(self.sorted, value)

    def median(self) -> float:
        s, n = self.sorted, len(self.sorted)
        return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])

    def rank(self, value: float) -> float:
        """Share of the window strictly below `value` (ties count half)."""
        if not self.sorted:
            return 0.5
        below = bisect_left(self.sorted, value)
        equal = bisect_right(self.sorted, value) - below
        return (below + 0.5 * equal) / len(self.sorted)

    def quartiles_many(
        self, added: np.ndarray, counts: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`add` each of `added`, in order, reporting the median, lower and upper quartile
        (`sorted[n // 4]`, `sorted[3 * n // 4]`) after the first `counts[i]` of them, for
        each i (none beyond len(added); each state must hold a value). A plain loop: a
        numpy sort of every window state costs more than the insertions."""
        wanted = np.zeros(len(added) + 1, dtype=bool)
        wanted[counts] = True
        median: list[float] = []
        low: list[float] = []
        high: list[float] = []
        s, size = self.sorted, self.size
        oldest, newest = self.order.popleft, self.order.append
        half, odd, lower, upper = size // 2, size % 2, size // 4, (3 * size) // 4
        for value, report in zip([*added.tolist(), None], wanted.tolist(), strict=True):
            n = len(s)
            if report and n == size:  # the usual case, its positions known
                median.append(s[half] if odd else 0.5 * (s[half - 1] + s[half]))
                low.append(s[lower])
                high.append(s[upper])
            elif report:
                median.append(s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2]))
                low.append(s[n // 4])
                high.append(s[(3 * n) // 4])
            if value is None:
                break
            if n == size:  # self.add(value), inline
                del s[bisect_left(s, oldest())]
            newest(value)
            insort(s, value)
        at = np.searchsorted(np.flatnonzero(wanted), counts)
        return np.array(median)[at], np.array(low)[at], np.array(high)[at]

    def state(self) -> dict[str, Any]:
        return {"size": self.size, "values": list(self.order)}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> SortedWindow:
        window = cls(state["size"])
        for value in state["values"]:
            window.add(value)
        return window
