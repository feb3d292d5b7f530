"""The analytics snapshot, counted on the database.

Two `$group`-by-listener pipelines over a `seq` range (a string that sorts like the listen
time, so no date comparison: docs/mongodb-compat.md g, h):

- totals in the range: listens, ms played, skips, evening and weekend listens, the first
  listen (`$min` of `seq`, whose 13-digit prefix is the epoch millisecond: date
  accumulators come back as text on nx-27017, e2);
- active UTC days over the range and the 29 days before it (for WAU/MAU windows): an
  `$addToSet` of `$dateToString` day keys, as storage/predictions.py counts days (e, e6).

Skips are `{$cond: [{$eq: ["$skipped", true]}, 1, 0]}`: `$sum` ignores booleans in
MongoDB, and nx-27017 rejects a bare field path as the `$cond` condition (n).
Listeners come from one `find` of the tenant's listeners.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from tunelytics.domain.analytics.activity import (
    WINDOW_LOOKBACK,
    Activity,
    DayRange,
    ListenerProfile,
    ListenerTotals,
)
from tunelytics.storage.listening import EPOCH
from tunelytics.storage.scope import document_key, keyed, tenant_scope

Document = dict[str, Any]
DAY_FORMAT = "%Y-%m-%d"


def seq_bound(moment: datetime) -> str:
    """The lowest `seq` of a listen at `moment` (listen_sequence in storage/listening.py)."""
    millis = (moment - EPOCH) // timedelta(milliseconds=1)
    return f"{max(millis, 0):013d}"


def _seq_time(seq: str) -> datetime:
    return EPOCH + timedelta(milliseconds=int(seq[:13]))


def _counted(condition: Document) -> Document:
    return {"$sum": {"$cond": [condition, 1, 0]}}


class AnalyticsRepository:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.listens = db["listens"]
        self.listeners = db["listeners"]
        self.versions = db["analytics_versions"]

    def _match(self, tenant_id: str, start: datetime, end: datetime) -> Document:
        return {
            "$match": tenant_scope(tenant_id, seq={"$gte": seq_bound(start), "$lt": seq_bound(end)})
        }

    async def totals(self, tenant_id: str, r: DayRange) -> dict[str, ListenerTotals]:
        group = {
            "_id": "$listener_id",
            "n": {"$sum": 1},
            "ms": {"$sum": "$ms_played"},
            "skips": _counted({"$eq": ["$skipped", True]}),
            "evening": _counted({"$gte": [{"$hour": "$ts"}, 18]}),
            "weekend": _counted({"$in": [{"$dayOfWeek": "$ts"}, [1, 7]]}),
            "first": {"$min": "$seq"},
        }
        pipeline = [self._match(tenant_id, r.start, r.end), {"$group": group}]
        return {
            doc["_id"]: ListenerTotals(
                listens=int(doc["n"]),
                ms_played=int(doc["ms"]),
                skips=int(doc["skips"]),
                evening=int(doc["evening"]),
                weekend=int(doc["weekend"]),
                first_at=_seq_time(doc["first"]),
            )
            async for doc in await self.listens.aggregate(pipeline)
        }

    async def days_active(self, tenant_id: str, r: DayRange) -> dict[str, frozenset[date]]:
        day = {"$dateToString": {"date": "$ts", "format": DAY_FORMAT}}
        pipeline = [
            self._match(tenant_id, r.start - WINDOW_LOOKBACK, r.end),
            {"$group": {"_id": "$listener_id", "days": {"$addToSet": day}}},
        ]
        return {
            doc["_id"]: frozenset(
                datetime.strptime(d, DAY_FORMAT).replace(tzinfo=UTC).date() for d in doc["days"]
            )
            async for doc in await self.listens.aggregate(pipeline)
        }

    async def profiles(self, tenant_id: str) -> dict[str, ListenerProfile]:
        fields = {"id": 1, "plan": 1, "country": 1, "signup_at": 1, "tenant_id": 1, "_id": 0}
        return {
            doc["id"]: ListenerProfile(doc["id"], doc["plan"], doc["country"], doc["signup_at"])
            async for doc in self.listeners.find(tenant_scope(tenant_id), fields)
            if doc["tenant_id"] == tenant_id
        }

    async def activity(self, tenant_id: str, r: DayRange) -> Activity:
        profiles, totals, days = await asyncio.gather(
            self.profiles(tenant_id), self.totals(tenant_id, r), self.days_active(tenant_id, r)
        )
        return Activity(r, profiles, totals, days)

    async def version(self, tenant_id: str) -> int:
        """The tenant's data version: bumped by every write of listens or listeners."""
        doc = await self.versions.find_one(keyed(tenant_id, ["data"]))
        return int(doc["v"]) if doc else 0

    async def bump(self, tenant_id: str) -> None:
        await self.versions.update_one(
            {"_id": document_key(tenant_id, "data")},
            {"$inc": {"v": 1}, "$setOnInsert": {"tenant_id": tenant_id}},
            upsert=True,
        )
