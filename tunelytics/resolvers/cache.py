"""One cache of results derived from a tenant's data: analytics snapshots, churn scores,
track popularity.

Entries are keyed by (tenant, what) and stamped with the tenant's data version
(storage/analytics.py: bumped by every write of listens or listeners and by seeding, and
kept in the database, so a write on any replica is seen by all) plus whatever else the
result depends on (the served model version, the day). A lookup with another stamp
recomputes. One computation per key runs at a time; concurrent requests wait for it and
share its result. A failed computation is not kept. Least recently used entries go
first beyond `entries`; a TTL backstops writes that bypass the version (a raw import).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from tunelytics.storage import Storage
from tunelytics.storage.analytics import AnalyticsRepository

T = TypeVar("T")
Key = tuple[str, Hashable]


@dataclass(slots=True)
class _Entry:
    stamp: Hashable
    value: Any
    stored_at: float = field(default_factory=time.monotonic)


class TenantCache:
    # 64 entries, as the analytics cache had alone: a snapshot of a big tenant's range is
    # megabytes, and tenants x ranges is unbounded.
    def __init__(self, entries: int = 64, ttl_s: float = 600.0) -> None:
        self.entries = entries
        self.ttl_s = ttl_s
        self._values: OrderedDict[Key, _Entry] = OrderedDict()
        self._locks: dict[Key, asyncio.Lock] = {}
        self.computed = 0  # how many lookups recomputed (tests, logs)

    async def get(
        self,
        storage: Storage,
        tenant_id: str,
        what: Hashable,
        compute: Callable[[], Awaitable[T]],
        *depends_on: Hashable,
    ) -> T:
        """The cached result of `compute()` for the tenant's current data (and
        `depends_on`), computing it when there is none."""
        version = await AnalyticsRepository(storage.db).version(tenant_id)
        return await self.stamped(tenant_id, what, (version, *depends_on), compute)

    async def stamped(
        self, tenant_id: str, what: Hashable, stamp: Hashable, compute: Callable[[], Awaitable[T]]
    ) -> T:
        key: Key = (tenant_id, what)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            entry = self._values.get(key)
            if (
                entry is not None
                and entry.stamp == stamp
                and time.monotonic() - entry.stored_at < self.ttl_s
            ):
                self._values.move_to_end(key)
                return cast(T, entry.value)
            value = await compute()
            self.computed += 1
            self._values[key] = _Entry(stamp, value)
            self._values.move_to_end(key)
            while len(self._values) > self.entries:
                evicted, _ = self._values.popitem(last=False)
                self._locks.pop(evicted, None)
            return value
