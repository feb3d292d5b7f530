"""A sliding window that keeps its values sorted: rolling median, MAD and ranks in O(n)
memmove per point (n is a few hundred), with explicit, serialisable state."""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections import deque
from typing import Any


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

    def state(self) -> dict[str, Any]:
        return {"size": self.size, "values": list(self.order)}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> SortedWindow:
        window = cls(state["size"])
        for value in state["values"]:
            window.add(value)
        return window
