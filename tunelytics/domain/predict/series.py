"""Regular series: the sampling interval inferred from timestamps, values on its grid."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from tunelytics.domain.predict.errors import NotEnoughData

DAY = 86_400.0
WEEK = 7 * DAY


@dataclass(frozen=True, slots=True)
class RegularSeries:
    """Values on an evenly spaced grid that starts at `start` and steps by `step`."""

    start: datetime
    step: timedelta
    values: np.ndarray

    def __len__(self) -> int:
        return len(self.values)

    def period(self, seconds: float) -> int:
        """How many steps make `seconds` (0 when the step does not divide it evenly)."""
        step = self.step.total_seconds()
        ratio = seconds / step
        steps = round(ratio)
        return steps if steps >= 2 and abs(ratio - steps) < 1e-6 else 0

    def at(self, index: int) -> datetime:
        return self.start + self.step * index


def regular(
    timestamps: Sequence[datetime],
    values: Sequence[float] | np.ndarray,
    max_gap_fraction: float = 0.2,
) -> RegularSeries:
    """Put observations on the grid of their median spacing.

    Duplicates within a step are averaged; a few missing steps are filled by linear
    interpolation. When more than `max_gap_fraction` of the grid is missing the series is
    too irregular to forecast honestly, and NotEnoughData says so.
    """
    if len(timestamps) != len(values):
        raise ValueError("timestamps and values differ in length")
    if len(timestamps) < 3:
        raise NotEnoughData(
            f"a forecast needs at least 3 observations, the series has {len(values)}"
        )
    seconds = np.array([_epoch(t) for t in timestamps], dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(y)):
        raise ValueError("values must be finite numbers")
    order = np.argsort(seconds, kind="stable")
    seconds, y = seconds[order], y[order]
    gaps = np.diff(seconds)
    positive = gaps[gaps > 0]
    if len(positive) == 0:
        raise NotEnoughData("all observations share one timestamp: no resolution to forecast at")
    step = float(np.median(positive))
    index = np.rint((seconds - seconds[0]) / step).astype(np.int64)
    size = int(index[-1]) + 1
    sums = np.bincount(index, weights=y, minlength=size)
    counts = np.bincount(index, minlength=size)
    seen = counts > 0
    if 1.0 - seen.mean() > max_gap_fraction:
        raise NotEnoughData(
            f"{(1 - seen.mean()):.0%} of the {size} steps of {step:g}s are missing: "
            "too irregular to forecast"
        )
    grid = np.arange(size, dtype=np.float64)
    filled = np.interp(grid, grid[seen], sums[seen] / counts[seen])
    start = datetime.fromtimestamp(seconds[0], tz=UTC)
    return RegularSeries(start=start, step=timedelta(seconds=step), values=filled)


def _epoch(moment: datetime) -> float:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
