"""What analytics is computed from: a snapshot of a tenant's listeners and their activity
in a range of whole UTC days.

Ranges are whole UTC days: `from` is taken down to its midnight, `to` up to the next
midnight (a `to` already at midnight stays), and listens count when `start <= played_at <
end`. Whole days keep DAU and the cohort weeks exact and comparable between queries.

>>> from datetime import datetime, UTC
>>> r = day_range(datetime(2026, 11, 1, 15, tzinfo=UTC), datetime(2026, 11, 3, 1, tzinfo=UTC))
>>> r.start.isoformat(), r.end.isoformat(), len(r.days)
('2026-11-01T00:00:00+00:00', '2026-11-04T00:00:00+00:00', 3)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from tunelytics.domain.listening import as_utc

DAY = timedelta(days=1)
MAX_RANGE = timedelta(days=366)
# MAU on the first day of a range looks 29 days back: the activity read starts that early.
WINDOW_LOOKBACK = timedelta(days=29)
PAID_PLANS = frozenset({"premium", "family", "student"})


@dataclass(frozen=True, slots=True)
class DayRange:
    start: datetime  # a UTC midnight, inclusive
    end: datetime  # a UTC midnight, exclusive

    @property
    def days(self) -> list[date]:
        first = self.start.date()
        return [first + timedelta(days=i) for i in range((self.end - self.start) // DAY)]


def day_range(start: datetime, end: datetime) -> DayRange:
    """Whole UTC days covering [start, end); ValueError naming what is wrong."""
    start, end = as_utc(start), as_utc(end)
    if start >= end:
        raise ValueError("`from` must be before `to`")
    low = start.replace(hour=0, minute=0, second=0, microsecond=0)
    high = end.replace(hour=0, minute=0, second=0, microsecond=0)
    if high < end:
        high += DAY
    if high - low > MAX_RANGE:
        raise ValueError(f"the range may cover at most {MAX_RANGE.days} days")
    return DayRange(low, high)


@dataclass(frozen=True, slots=True)
class ListenerProfile:
    id: str
    plan: str
    country: str
    signup_at: datetime

    @property
    def paid(self) -> bool:
        return self.plan in PAID_PLANS


@dataclass(frozen=True, slots=True)
class ListenerTotals:
    """One listener's listens in the range."""

    listens: int
    ms_played: int
    skips: int
    evening: int  # listens from 18:00 to midnight UTC
    weekend: int  # listens on Saturday or Sunday (UTC)
    first_at: datetime  # the first listen in the range


@dataclass(slots=True)
class Activity:
    """The snapshot every analytics field is computed from.

    `days_active` covers the range and the WINDOW_LOOKBACK before it (for WAU/MAU
    windows); `totals` covers the range only, and has listeners with a listen in it.
    """

    range: DayRange
    listeners: dict[str, ListenerProfile]
    totals: dict[str, ListenerTotals]
    days_active: dict[str, frozenset[date]]
    _by_day: dict[date, set[str]] | None = field(default=None, repr=False)

    def active_on(self, day: date) -> set[str]:
        if self._by_day is None:
            by_day: dict[date, set[str]] = {}
            for listener_id, days in self.days_active.items():
                for d in days:
                    by_day.setdefault(d, set()).add(listener_id)
            self._by_day = by_day
        return self._by_day.get(day, set())


def midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)
