"""A sliding window that keeps its values sorted: rolling median, MAD and ranks in O(n)
memmove per point (n is a few hundred), with explicit, serialisable state. Batches go
through compiled loops (`kernels`) that give the same statistics."""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections import deque
from typing import Any

import numpy as np

from tunelytics.domain.monitoring import kernels


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
        """`add` each of `added` (no NaN), in order, reporting the median, lower and upper
        quartile (`sorted[n // 4]`, `sorted[3 * n // 4]`) after the first `counts[i]` of
        them, for each i (`counts` ascending, none beyond len(added); each state must hold
        a value). Compiled (`kernels.quartiles`)."""
        merged = self.merged(added)
        out = kernels.quartiles(merged, np.argsort(merged), len(self), self.size, counts)
        self.slide(merged)
        return out

    def merged(self, added: np.ndarray) -> np.ndarray:
        """The values held, oldest first, then `added`."""
        return np.concatenate([np.fromiter(self.order, float, len(self.order)), added])

    def slide(self, merged: np.ndarray) -> None:
        """Hold the newest `size` of `merged` (as `merged` gives them), as `add` of each
        value after those held would."""
        newest = merged[-self.size :]
        self.order = deque(newest.tolist())
        self.sorted = np.sort(newest).tolist()

    def state(self) -> dict[str, Any]:
        return {"size": self.size, "values": list(self.order)}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> SortedWindow:
        window = cls(state["size"])
        for value in state["values"]:
            window.add(value)
        return window
