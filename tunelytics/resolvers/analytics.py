"""Business analytics: range checks, the cached snapshot, error mapping.

Every field of one `analytics(from, to)` shares one snapshot (three database reads),
kept per (tenant, range) in the tenant cache (resolvers/cache.py) until the tenant's
data version changes, which every recordListens / upsertListeners
(resolvers/listening.py) and seeding bumps: a new listen or listener makes the next
query read afresh, on every replica, since the version lives in the database. Heavy
results computed from a snapshot (segments) are kept with it.
Viewers and up may read analytics (Permission.READ).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from strawberry import Info

from tunelytics.domain.analytics import Activity, DayRange, day_range
from tunelytics.domain.analytics.abtest import Comparison, Metric, compare_means, compare_rates
from tunelytics.domain.auth import Permission
from tunelytics.domain.predict.errors import NotEnoughData
from tunelytics.resolvers.context import Context
from tunelytics.resolvers.errors import BadUserInput
from tunelytics.storage.analytics import AnalyticsRepository

CtxInfo = Info[Context, None]
T = TypeVar("T")
DEFAULT_RANGE = timedelta(days=28)
MAX_GROUP_IDS = 10_000


@dataclass(slots=True)
class Snapshot:
    activity: Activity
    results: dict[Any, Any] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


def analytics_range(start: datetime | None, end: datetime | None) -> DayRange:
    end = end or datetime.now(UTC)
    start = start or end - DEFAULT_RANGE
    try:
        return day_range(start, end)
    except ValueError as error:
        raise BadUserInput(str(error)) from None


def not_enough(error: NotEnoughData) -> BadUserInput:
    return BadUserInput(f"not enough data: {error}", reason="NOT_ENOUGH_DATA")


async def snapshot(info: CtxInfo, r: DayRange) -> Snapshot:
    ctx = info.context
    tenant = ctx.authorize(Permission.READ).tenant_id
    repo = AnalyticsRepository(ctx.storage.db)

    async def read() -> Snapshot:
        return Snapshot(await repo.activity(tenant, r))

    return await ctx.services.cache.get(ctx.storage, tenant, ("analytics", r.start, r.end), read)


async def computed(snap: Snapshot, key: Any, work: Callable[[], T]) -> T:
    """A CPU-heavy result of the snapshot, computed once (off the event loop) and kept."""
    async with snap.lock:
        if key not in snap.results:
            try:
                snap.results[key] = await asyncio.to_thread(work)
            except NotEnoughData as error:
                snap.results[key] = not_enough(error)
            except ValueError as error:
                snap.results[key] = BadUserInput(str(error))
    result = snap.results[key]
    if isinstance(result, BadUserInput):
        raise result
    return result


def run(work: Callable[[], T]) -> T:
    try:
        return work()
    except NotEnoughData as error:
        raise not_enough(error) from None
    except ValueError as error:
        raise BadUserInput(str(error)) from None


@dataclass(frozen=True, slots=True)
class ListenerGroup:
    ids: list[str] | None = None
    plan: str | None = None
    country: str | None = None

    def members(self, activity: Activity, name: str) -> set[str]:
        if (self.ids is None) == (self.plan is None and self.country is None):
            raise BadUserInput(f"{name}: give either `ids` or a filter (`plan`, `country`)")
        if self.ids is not None:
            if len(self.ids) > MAX_GROUP_IDS:
                raise BadUserInput(f"{name}: at most {MAX_GROUP_IDS} ids")
            unknown = sorted(set(self.ids) - activity.listeners.keys())
            if unknown:
                raise BadUserInput(f"{name}: unknown listeners {', '.join(unknown[:5])}")
            return set(self.ids)
        return {
            p.id
            for p in activity.listeners.values()
            if self.plan in (None, p.plan) and self.country in (None, p.country)
        }


def ab_test(
    activity: Activity, a: ListenerGroup, b: ListenerGroup, metric: Metric, level: float
) -> Comparison:
    if not (math.isfinite(level) and 0.5 <= level < 1):
        raise BadUserInput("level: a confidence level from 0.5 up to (not including) 1")
    group_a, group_b = a.members(activity, "groupA"), b.members(activity, "groupB")
    if group_a & group_b:
        raise BadUserInput(f"groupA and groupB share {len(group_a & group_b)} listeners")
    totals = activity.totals

    def values(group: set[str], of: Callable[[str], int]) -> list[float]:
        return [float(of(m)) if m in totals else 0.0 for m in sorted(group)]

    if metric is Metric.SKIP_RATE:
        hits = [sum(totals[m].skips for m in g if m in totals) for g in (group_a, group_b)]
        ns = [sum(totals[m].listens for m in g if m in totals) for g in (group_a, group_b)]
        return run(lambda: compare_rates(hits[0], ns[0], hits[1], ns[1], level))
    of: Callable[[str], int] = (
        (lambda m: totals[m].listens)
        if metric is Metric.LISTENS_PER_LISTENER
        else (lambda m: totals[m].ms_played)
    )
    return run(lambda: compare_means(values(group_a, of), values(group_b, of), level))
