"""Engagement: active listeners, stickiness, listening time and skips, per group.

Definitions (D = the days of the range, A(d) = listeners with a listen on UTC day d):

- DAU: the mean over d in D of |A(d)|.
- WAU: the mean over d in D of the listeners active in the trailing 7 days [d-6, d].
- MAU: the mean over d in D of the listeners active in the trailing 30 days [d-29, d].
  Windows reach back before the range (the snapshot reads that far), so the first days
  of a range are not undercounted.
- stickiness: DAU / MAU (null when MAU is 0).
- listens, listening time (sum of ms played), listeners (distinct, with a listen in the
  range), skip rate (skipped listens / listens, null without listens) over the range.

A group is the listener's current plan or country (listeners have no plan history).

>>> from datetime import UTC, datetime, timedelta
>>> from tunelytics.domain.analytics.activity import *
>>> r = day_range(datetime(2026, 1, 10, tzinfo=UTC), datetime(2026, 1, 12, tzinfo=UTC))
>>> p = ListenerProfile("a", "free", "SE", datetime(2025, 1, 1, tzinfo=UTC))
>>> t = ListenerTotals(3, 600_000, 1, 0, 2, datetime(2026, 1, 10, tzinfo=UTC))
>>> days = frozenset({datetime(2026, 1, 10).date(), datetime(2026, 1, 5).date()})
>>> g, = engagement(Activity(r, {"a": p}, {"a": t}, {"a": days}), None)
>>> g.dau, g.wau, g.mau, g.stickiness, g.skip_rate
(0.5, 1.0, 1.0, 0.5, 0.3333333333333333)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from enum import Enum

from tunelytics.domain.analytics.activity import Activity, ListenerProfile


class GroupBy(Enum):
    PLAN = "plan"
    COUNTRY = "country"


@dataclass(frozen=True, slots=True)
class Engagement:
    group: str | None
    dau: float
    wau: float
    mau: float
    stickiness: float | None
    listens: int
    listeners: int
    listening_time_ms: int
    skip_rate: float | None

    @property
    def listens_per_listener(self) -> float | None:
        return self.listens / self.listeners if self.listeners else None


def covered_days(active: Iterable[date], days: list[date], window: int) -> int:
    """How many of `days` have an active day within the trailing `window` days."""
    if not days:
        return 0
    first, last = days[0].toordinal(), days[-1].toordinal()
    covered: set[int] = set()
    for day in active:
        a = day.toordinal()
        covered.update(range(max(a, first), min(a + window - 1, last) + 1))
    return len(covered)


def _key(group_by: GroupBy | None) -> Callable[[ListenerProfile | None], str | None]:
    if group_by is None:
        return lambda profile: None
    return lambda profile: getattr(profile, group_by.value) if profile else "unknown"


def engagement(activity: Activity, group_by: GroupBy | None) -> list[Engagement]:
    """One row per group (a single row with group None when not grouped), sorted by group."""
    key = _key(group_by)
    days = activity.range.days
    sums: dict[str | None, list[int]] = {}

    def row(group: str | None) -> list[int]:
        # active-day counts for DAU, WAU, MAU; listens, listeners, ms, skips
        return sums.setdefault(group, [0, 0, 0, 0, 0, 0, 0])

    for listener_id, active in activity.days_active.items():
        r = row(key(activity.listeners.get(listener_id)))
        for i, window in enumerate((1, 7, 30)):
            r[i] += covered_days(active, days, window)
    for listener_id, totals in activity.totals.items():
        r = row(key(activity.listeners.get(listener_id)))
        r[3] += totals.listens
        r[4] += 1
        r[5] += totals.ms_played
        r[6] += totals.skips
    n = len(days)
    result = []
    for group, (dau, wau, mau, listens, listeners, ms, skips) in sums.items():
        result.append(
            Engagement(
                group=group,
                dau=dau / n,
                wau=wau / n,
                mau=mau / n,
                stickiness=dau / mau if mau else None,
                listens=listens,
                listeners=listeners,
                listening_time_ms=ms,
                skip_rate=skips / listens if listens else None,
            )
        )
    if not result and group_by is None:
        result.append(Engagement(None, 0.0, 0.0, 0.0, None, 0, 0, 0, None))
    return sorted(result, key=lambda e: e.group or "")
