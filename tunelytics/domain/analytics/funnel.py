"""A funnel over listener actions, for the listeners who signed up in the range.

Steps, in the order asked (each counts the listeners who reached it and every step
before it; actions are counted in the range):

- SIGNED_UP: signed up in the range (the funnel's population).
- FIRST_LISTEN: at least one listen.
- TEN_LISTENS: at least 10 listens.
- THREE_DAYS: listened on at least 3 distinct UTC days.
- PAID_PLAN: is on a paid plan (premium, family or student) now; plans have no history.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from tunelytics.domain.analytics.activity import Activity, ListenerProfile


class FunnelStep(Enum):
    SIGNED_UP = "SIGNED_UP"
    FIRST_LISTEN = "FIRST_LISTEN"
    TEN_LISTENS = "TEN_LISTENS"
    THREE_DAYS = "THREE_DAYS"
    PAID_PLAN = "PAID_PLAN"


DEFAULT_STEPS = list(FunnelStep)


@dataclass(frozen=True, slots=True)
class FunnelRow:
    step: FunnelStep
    listeners: int
    from_previous: float | None  # share of the previous step's listeners; None for the first
    from_start: float | None  # share of the first step's listeners


def _reached(activity: Activity, step: FunnelStep) -> Callable[[ListenerProfile], bool]:
    r = activity.range

    def days_in_range(p: ListenerProfile) -> int:
        low, high = r.start.date(), r.end.date()
        return sum(1 for d in activity.days_active.get(p.id, ()) if low <= d < high)

    def listens(p: ListenerProfile) -> int:
        totals = activity.totals.get(p.id)
        return totals.listens if totals else 0

    return {
        FunnelStep.SIGNED_UP: lambda p: r.start <= p.signup_at < r.end,
        FunnelStep.FIRST_LISTEN: lambda p: listens(p) >= 1,
        FunnelStep.TEN_LISTENS: lambda p: listens(p) >= 10,
        FunnelStep.THREE_DAYS: lambda p: days_in_range(p) >= 3,
        FunnelStep.PAID_PLAN: lambda p: p.paid,
    }[step]


def funnel(activity: Activity, steps: list[FunnelStep]) -> list[FunnelRow]:
    """ValueError for an empty or repeated step list."""
    if not steps or len(set(steps)) != len(steps):
        raise ValueError("steps: give each step at most once, at least one")
    r = activity.range
    population = [p for p in activity.listeners.values() if r.start <= p.signup_at < r.end]
    rows: list[FunnelRow] = []
    for step in steps:
        reached = _reached(activity, step)
        population = [p for p in population if reached(p)]
        first = rows[0].listeners if rows else None
        previous = rows[-1].listeners if rows else None
        rows.append(
            FunnelRow(
                step,
                len(population),
                from_previous=len(population) / previous if previous else None,
                from_start=len(population) / first if first else None,
            )
        )
    return rows
