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
        each i (`counts` ascending, each within the window's values). A plain loop: a
        numpy sort of every window state costs more than the insertions."""
        wanted = counts.tolist()
        median: list[float] = []
        low: list[float] = []
        high: list[float] = []
        s, size, q = self.sorted, self.size, 0
        oldest, newest = self.order.popleft, self.order.append
        for j, value in enumerate([*added.tolist(), None]):
            n = len(s)
            while q < len(wanted) and wanted[q] == j:
                median.append(s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2]))
                low.append(s[n // 4])
                high.append(s[(3 * n) // 4])
                q += 1
            if value is not None:  # self.add(value), inline
                if n == size:
                    del s[bisect_left(s, oldest())]
                newest(value)
                insort(s, value)
        return np.array(median), np.array(low), np.array(high)

    def state(self) -> dict[str, Any]:
        return {"size": self.size, "values": list(self.order)}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> SortedWindow:
        window = cls(state["size"])
        for value in state["values"]:
            window.add(value)
        return window
