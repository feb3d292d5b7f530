"""Series the product derives from listens, and the forecasts kept as predictions.

Streams are counted per hour, active listeners (distinct listeners with a listen) per
day, over the tenant, one artist or one track. Hours or days without a listen inside the
observed span count zero: a missing bucket is a real zero, not a gap.

>>> from datetime import datetime, UTC
>>> counts = {datetime(2026, 1, 1, 0, tzinfo=UTC): 3, datetime(2026, 1, 1, 3, tzinfo=UTC): 1}
>>> counted_series(counts, HOUR).values.tolist()
[3.0, 0.0, 0.0, 1.0]
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from tunelytics.domain.predict.errors import NotEnoughData
from tunelytics.domain.predict.forecast import Forecast
from tunelytics.domain.predict.series import RegularSeries

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
# Bumped whenever the model family, selection or calibration changes: stored predictions
# say which procedure made them. 2: intervals from errors scaled by the local level,
# the nominal level recalibrated on later backtest origins.
FORECASTER_VERSION = "forecast-2"


class SeriesKind(enum.Enum):
    STREAMS = "streams"
    ACTIVE_LISTENERS = "active_listeners"
    METRIC = "metric"


STEP = {SeriesKind.STREAMS: HOUR, SeriesKind.ACTIVE_LISTENERS: DAY}
# How much history a derived series reads: enough for weekly seasons and the backtest.
HISTORY = {SeriesKind.STREAMS: timedelta(weeks=8), SeriesKind.ACTIVE_LISTENERS: timedelta(days=365)}


@dataclass(frozen=True, slots=True)
class SeriesRef:
    """Which series: a derived kind over the tenant, an artist or a track, or a metric."""

    kind: SeriesKind
    artist_id: str | None = None
    track_id: str | None = None
    series_id: str | None = None

    @property
    def subject(self) -> str:
        if self.series_id is not None:
            return f"metric:{self.series_id}"
        if self.track_id is not None:
            return f"track:{self.track_id}"
        if self.artist_id is not None:
            return f"artist:{self.artist_id}"
        return "tenant"


@dataclass(frozen=True, slots=True)
class Prediction:
    """A forecast as stored: what was forecast, by which model, when."""

    id: str
    kind: SeriesKind
    subject: str
    horizon: int
    level: float
    forecast: Forecast
    model_version: str
    created_at: datetime


def bucket_start(at: datetime, step: timedelta) -> datetime:
    """The start of the (UTC, epoch-aligned) bucket holding `at`: the hour or the day."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return epoch + (at - epoch) // step * step


def counted_series(counts: dict[datetime, int], step: timedelta) -> RegularSeries:
    """Counts per bucket start on a full grid from the first to the last bucket."""
    if not counts:
        raise NotEnoughData("the series has no listens yet")
    starts = sorted(counts)
    first = starts[0]
    size = int((starts[-1] - first) / step) + 1
    values = np.zeros(size)
    for start, count in counts.items():
        values[int((start - first) / step)] = count
    return RegularSeries(start=first, step=step, values=values)


def points_series(times_ms: list[int], values: list[float]) -> tuple[list[datetime], list[float]]:
    """Metric points (epoch milliseconds) as the timestamps forecast() takes."""
    return [datetime.fromtimestamp(t / 1000, tz=UTC) for t in times_ms], values
