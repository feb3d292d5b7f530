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
        self._order: deque[float] = deque()
        self._sorted: list[float] = []
        # After a batch: the values held, oldest first, as an array (the lists are stale
        # then); the lists are made from it only when a single point needs them, so
        # consecutive batches cost no list sorting or conversion.
        self._held: np.ndarray | None = None

    @property
    def order(self) -> deque[float]:
        """The values held, oldest first."""
        if self._held is not None:
            self._take_lists()
        return self._order

    @property
    def sorted(self) -> list[float]:
        """The values held, ascending."""
        if self._held is not None:
            self._take_lists()
        return self._sorted

    def _take_lists(self) -> None:
        assert self._held is not None
        self._order = deque(self._held.tolist())
        self._sorted = np.sort(self._held).tolist()
        self._held = None  # the lists change from now on

    def __len__(self) -> int:
        return len(self._held) if self._held is not None else len(self._order)

    # The single-point methods read the lists directly (no property calls: `score_one`
    # runs them a dozen times a point).
    def add(self, value: float) -> None:
        if self._held is not None:
            self._take_lists()
        order, s = self._order, self._sorted
        if len(order) == self.size:
            old = order.popleft()
            del s[bisect_left(s, old)]
        order.append(value)
        insort(s, value)

    def median(self) -> float:
        if self._held is not None:
            self._take_lists()
        s = self._sorted
        n = len(s)
        return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])

    def rank(self, value: float) -> float:
        """Share of the window strictly below `value` (ties count half)."""
        if self._held is not None:
            self._take_lists()
        s = self._sorted
        if not s:
            return 0.5
        below = bisect_left(s, value)
        equal = bisect_right(s, value) - below
        return (below + 0.5 * equal) / len(s)

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
        held = self._held
        if held is None:
            held = np.fromiter(self.order, float, len(self.order))
        return np.concatenate([held, added])

    def slide(self, merged: np.ndarray) -> None:
        """Hold the newest `size` of `merged`, as `add` of each value after those held
        would."""
        self._held = merged[-self.size :].copy()
        self._order, self._sorted = deque(), []  # stale: freed (floats in lists cost 4x)

    def state(self) -> dict[str, Any]:
        values = self._held.tolist() if self._held is not None else list(self.order)
        return {"size": self.size, "values": values}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> SortedWindow:
        window = cls(state["size"])
        for value in state["values"]:
            window.add(value)
        return window
