"""Weekly retention by signup cohort.

A cohort is the listeners who signed up in one week of the range, weeks counted from the
range's first day (cohort k starts at `from + 7k days`). `weeks[j]` is the share of the
cohort with at least one listen in [cohort start + 7j, cohort start + 7(j+1)): week 0 is
the signup week itself. Only weeks that end by the range's end are reported (a partial
week would read as churn), so the newest cohorts have the shortest rows.

>>> from datetime import UTC, datetime, timedelta
>>> from tunelytics.domain.analytics.activity import *
>>> r = day_range(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 15, tzinfo=UTC))
>>> a = ListenerProfile("a", "free", "SE", datetime(2026, 1, 2, tzinfo=UTC))
>>> b = ListenerProfile("b", "free", "SE", datetime(2026, 1, 3, tzinfo=UTC))
>>> days = {"a": frozenset({datetime(2026, 1, 2).date(), datetime(2026, 1, 9).date()})}
>>> [(c.size, c.weeks) for c in retention(Activity(r, {"a": a, "b": b}, {}, days))]
[(2, [0.5, 0.5]), (0, [])]
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from tunelytics.domain.analytics.activity import Activity

WEEK = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class Cohort:
    start: datetime
    size: int
    weeks: list[float]


def retention(activity: Activity) -> list[Cohort]:
    r = activity.range
    cohorts: list[Cohort] = []
    start = r.start
    while start < r.end:
        members = [p.id for p in activity.listeners.values() if start <= p.signup_at < start + WEEK]
        weeks = []
        j = 0
        while members and start + (j + 1) * WEEK <= r.end:
            low, high = (start + j * WEEK).date(), (start + (j + 1) * WEEK).date()
            kept = sum(
                1 for m in members if any(low <= d < high for d in activity.days_active.get(m, ()))
            )
            weeks.append(kept / len(members))
            j += 1
        cohorts.append(Cohort(start, len(members), weeks))
        start += WEEK
    return cohorts
