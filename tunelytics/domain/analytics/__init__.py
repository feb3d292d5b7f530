"""Business analytics over a tenant's listeners and listens (issue 6.5): pure functions of
an `Activity` snapshot that the storage layer counts on the database."""

from tunelytics.domain.analytics.activity import (
    MAX_RANGE,
    WINDOW_LOOKBACK,
    Activity,
    DayRange,
    ListenerProfile,
    ListenerTotals,
    day_range,
)

__all__ = [
    "MAX_RANGE",
    "WINDOW_LOOKBACK",
    "Activity",
    "DayRange",
    "ListenerProfile",
    "ListenerTotals",
    "day_range",
]
