"""The one per-tenant cache of derived results: the data version (and what else a result
depends on) decides freshness; one computation per key; failures are not kept."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tunelytics.resolvers.cache import TenantCache
from tunelytics.storage import Storage
from tunelytics.storage.analytics import AnalyticsRepository


class Counter:
    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self) -> int:
        self.calls += 1
        await asyncio.sleep(0.01)  # let concurrent lookups pile up behind the first
        return self.calls


async def test_a_data_version_bump_recomputes_for_that_tenant_only(storage: Storage) -> None:
    cache = TenantCache()
    a, b = f"t-{uuid.uuid4().hex[:8]}", f"t-{uuid.uuid4().hex[:8]}"
    compute_a, compute_b = Counter(), Counter()
    assert await cache.get(storage, a, "churn", compute_a) == 1
    assert await cache.get(storage, b, "churn", compute_b) == 1
    assert await cache.get(storage, a, "churn", compute_a) == 1  # cached
    await AnalyticsRepository(storage.db).bump(a)  # what recordListens does
    assert await cache.get(storage, a, "churn", compute_a) == 2
    assert await cache.get(storage, b, "churn", compute_b) == 1  # B's data did not change
    # Another dependency (the served model version) recomputes too, then is cached.
    assert await cache.get(storage, a, "churn", compute_a, 2) == 3
    assert await cache.get(storage, a, "churn", compute_a, 2) == 3
    # Different results of one tenant are different entries.
    other = Counter()
    assert await cache.get(storage, a, "popularity", other, 2) == 1


async def test_concurrent_lookups_share_one_computation_and_failures_are_not_kept() -> None:
    cache = TenantCache()
    compute = Counter()
    results = await asyncio.gather(*(cache.stamped("t", "k", 1, compute) for _ in range(5)))
    assert results == [1] * 5 and compute.calls == 1

    async def fail() -> int:
        raise ValueError("not enough data")

    with pytest.raises(ValueError):
        await cache.stamped("t", "bad", 1, fail)
    assert await cache.stamped("t", "bad", 1, compute) == 2  # computed afresh


async def test_least_recently_used_entries_go_first_and_the_ttl_backstops() -> None:
    cache = TenantCache(entries=2)
    compute = Counter()
    await cache.stamped("t", "one", 0, compute)
    await cache.stamped("t", "two", 0, compute)
    await cache.stamped("t", "one", 0, compute)  # touched: "two" is now the oldest
    await cache.stamped("t", "three", 0, compute)
    assert compute.calls == 3
    assert await cache.stamped("t", "one", 0, compute) == 1  # still there
    assert await cache.stamped("t", "two", 0, compute) == 4  # evicted, recomputed
    expiring = TenantCache(ttl_s=0.0)
    first = await expiring.stamped("t", "k", 0, compute)
    assert await expiring.stamped("t", "k", 0, compute) == first + 1  # expired at once
