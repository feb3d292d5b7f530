"""The analytics snapshot, counted on the database.

`$group`-by-listener pipelines over a `seq` range (a string that sorts like the listen
time, so no date comparison: docs/mongodb-compat.md g, h):

- totals in the range: listens, ms played, the first listen (`$min` of `seq`, whose
  13-digit prefix is the epoch millisecond: date accumulators come back as text on
  nx-27017, e2), and the `$dateToString` hour key of each listen, from which evening and
  weekend listens are counted here;
- skips in the range: `$match` on `skipped: {$eq: true}`, then a count per listener
  (`$sum: "$skipped"` would be 0 on MongoDB, which ignores booleans; a `$cond` is
  rejected on a bare field path and slow otherwise on nx-27017, n);
- active UTC days over the range and the 29 days before it (for WAU/MAU windows): an
  `$addToSet` of `$dateToString` day keys (date_key, shared with storage/predictions.py).

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
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
DATE_KEY_FORMATS = {HOUR: "%Y-%m-%dT%H", DAY: "%Y-%m-%d"}


def date_key(step: timedelta) -> Document:
    """A listen's UTC hour or day as a `$dateToString` string, the one way every pipeline
    here and in storage/predictions.py buckets listens by time: `$dateTrunc` keys come
    back as text on nx-27017 and `$toLong` of a date is null (docs/mongodb-compat.md e,
    e6), while these strings are exact on both. parse_date_key reads one back."""
    return {"$dateToString": {"date": "$ts", "format": DATE_KEY_FORMATS[step]}}


def parse_date_key(key: str, step: timedelta) -> datetime:
    return datetime.strptime(key, DATE_KEY_FORMATS[step]).replace(tzinfo=UTC)


def seq_bound(moment: datetime) -> str:
    """The lowest `seq` of a listen at `moment` (listen_sequence in storage/listening.py)."""
    millis = (moment - EPOCH) // timedelta(milliseconds=1)
    return f"{max(millis, 0):013d}"


def _seq_time(seq: str) -> datetime:
    return EPOCH + timedelta(milliseconds=int(seq[:13]))


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
        match = self._match(tenant_id, r.start, r.end)
        hour = date_key(HOUR)
        group = {
            "_id": "$listener_id",
            "n": {"$sum": 1},
            "ms": {"$sum": "$ms_played"},
            "first": {"$min": "$seq"},
            # Evening and weekend listens are counted here from the hour keys: a `$cond`
            # in `$sum` is evaluated row by row on nx-27017, ~30x slower (n).
            "hours": {"$push": hour},
        }
        skipped = {"$match": {"skipped": {"$eq": True}}}
        count = {"$group": {"_id": "$listener_id", "n": {"$sum": 1}}}
        rows, skips = await asyncio.gather(
            self._rows([match, {"$group": group}]), self._rows([match, skipped, count])
        )
        skips_of = {doc["_id"]: int(doc["n"]) for doc in skips}
        result = {}
        for doc in rows:
            hours = [parse_date_key(h, HOUR) for h in doc["hours"]]
            result[doc["_id"]] = ListenerTotals(
                listens=int(doc["n"]),
                ms_played=int(doc["ms"]),
                skips=skips_of.get(doc["_id"], 0),
                evening=sum(1 for h in hours if h.hour >= 18),
                weekend=sum(1 for h in hours if h.weekday() >= 5),
                first_at=_seq_time(doc["first"]),
            )
        return result

    async def _rows(self, pipeline: list[Document]) -> list[Document]:
        return await (await self.listens.aggregate(pipeline)).to_list()

    async def days_active(self, tenant_id: str, r: DayRange) -> dict[str, frozenset[date]]:
        pipeline = [
            self._match(tenant_id, r.start - WINDOW_LOOKBACK, r.end),
            {"$group": {"_id": "$listener_id", "days": {"$addToSet": date_key(DAY)}}},
        ]
        return {
            doc["_id"]: frozenset(parse_date_key(d, DAY).date() for d in doc["days"])
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
