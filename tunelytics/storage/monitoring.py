"""Metric series, their points with scores, and the detectors' checkpoints.

Points are keyed `_id = "<tenant>/<series>/<ms, 13 digits>"`: the primary index alone
serves a series' time range (one `_id` range scan) and refuses a second point at the same
time, so no secondary index slows the biggest write path. Times are epoch milliseconds
(integers): the embedded server compares dates only to the second (docs/mongodb-compat.md).
`expire_at` carries MongoDB's TTL deletion (nx-27017 honours it too, docs/mongodb-compat.md);
the periodic sweep (`delete_before`) enforces retention on servers that run no TTL monitor.

Checkpoints live in their own collection, so listing series never reads detector state.
A checkpoint is written only by the replica holding the series' lease, with a version
compare-and-set (`save_checkpoint`), so two replicas can never both advance one series.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING, IndexModel, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from tunelytics.domain.monitoring.points import (
    DAY_MS,
    MetricSeries,
    SeriesFilter,
    SeriesKey,
    StoredPoint,
)
from tunelytics.domain.paging import Order, Page, Position
from tunelytics.storage.keyset import keyset_page
from tunelytics.storage.scope import document_key, keyed, tenant_scope

Document = dict[str, Any]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def point_key(tenant_id: str, series: str, at_ms: int) -> str:
    return f"{tenant_id}/{series}/{at_ms:013d}"


def _series(doc: Document) -> MetricSeries:
    return MetricSeries(
        id=doc["id"],
        name=doc["name"],
        labels=tuple((label["name"], label["value"]) for label in doc.get("labels", [])),
        last_at_ms=doc.get("last_at"),
        last_value=doc.get("last_value"),
        last_score=doc.get("last_score"),
    )


class SeriesRepository:
    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self.collection = collection

    async def by_ids(self, tenant_id: str, ids: list[str]) -> dict[str, MetricSeries]:
        cursor = self.collection.find(keyed(tenant_id, ids))
        return {doc["id"]: _series(doc) async for doc in cursor if doc["tenant_id"] == tenant_id}

    async def ensure(self, tenant_id: str, keys: Iterable[SeriesKey]) -> None:
        """Register series seen for the first time (idempotent)."""
        now = datetime.now(UTC)
        ops = [
            UpdateOne(
                {"_id": document_key(tenant_id, key.id)},
                {
                    "$setOnInsert": {
                        "tenant_id": tenant_id,
                        "id": key.id,
                        "name": key.name,
                        "labels": [{"name": k, "value": v} for k, v in key.labels],
                        "label_pairs": [f"{k}={v}" for k, v in key.labels],
                        "created_at": now,
                    }
                },
                upsert=True,
            )
            for key in keys
        ]
        if ops:
            await self.collection.bulk_write(ops, ordered=False)

    async def update_latest(
        self, tenant_id: str, latest: dict[str, tuple[int, float, float]]
    ) -> None:
        """(at_ms, value, score) of each series' newest point (written by its owner only)."""
        ops = [
            UpdateOne(
                {"_id": document_key(tenant_id, sid)},
                {"$set": {"last_at": at, "last_value": value, "last_score": score}},
            )
            for sid, (at, value, score) in latest.items()
        ]
        if ops:
            await self.collection.bulk_write(ops, ordered=False)

    async def page(
        self, tenant_id: str, where: SeriesFilter, after: Position | None, first: int
    ) -> Page[MetricSeries]:
        query = tenant_scope(tenant_id)
        if where.name is not None:
            query["name"] = {"$eq": where.name}
        if where.labels:
            # `$all` of "name=value" strings: plain equality on an array field is wrong on
            # the embedded server (docs/mongodb-compat.md a, b).
            query["label_pairs"] = {"$all": [f"{k}={v}" for k, v in where.labels]}
        return await keyset_page(self.collection, query, Order("name"), after, first, _series)

    async def with_points(self, tenant_id: str) -> list[MetricSeries]:
        cursor = self.collection.find(tenant_scope(tenant_id))
        return [_series(doc) async for doc in cursor]

    async def all_ids(self, tenant_id: str) -> list[str]:
        cursor = self.collection.find(tenant_scope(tenant_id), {"id": 1})
        return [doc["id"] async for doc in cursor]


class PointRepository:
    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self.collection = collection

    async def insert(
        self,
        tenant_id: str,
        points: list[tuple[str, int, float, float]],
        retention_days: int,
    ) -> set[int]:
        """Store (series, at_ms, value, score) rows; returns the positions of those refused
        as duplicates (a point already stored at that time, e.g. by a replay)."""
        if not points:
            return set()
        keep = timedelta(days=retention_days)
        docs = [
            {
                "_id": point_key(tenant_id, sid, at),
                "tenant_id": tenant_id,
                "series_id": sid,
                "t": at,
                "v": value,
                "s": score,
                "expire_at": EPOCH + timedelta(milliseconds=at) + keep,
            }
            for sid, at, value, score in points
        ]
        try:
            await self.collection.insert_many(docs, ordered=False)
        except BulkWriteError as error:
            duplicates = {e["index"] for e in error.details["writeErrors"] if e["code"] == 11000}
            if len(duplicates) != len(error.details["writeErrors"]):
                raise
            return duplicates
        return set()

    async def between(
        self, tenant_id: str, series: str, start_ms: int, end_ms: int, limit: int
    ) -> list[StoredPoint]:
        """Points of [start_ms, end_ms) in time order, at most `limit` (the newest kept
        when the range holds more)."""
        start_ms, end_ms = max(start_ms, 0), max(end_ms, 0)
        query = {
            "_id": {
                "$gte": point_key(tenant_id, series, start_ms),
                "$lt": point_key(tenant_id, series, end_ms),
            }
        }
        docs = (
            await self.collection.find(query, {"t": 1, "v": 1, "s": 1})
            .sort("_id", -1)
            .limit(limit)
            .to_list()
        )
        return [StoredPoint(d["t"], d["v"], d["s"]) for d in reversed(docs)]

    async def latest(self, tenant_id: str, series: str) -> StoredPoint | None:
        points = await self.between(tenant_id, series, 0, 10**13 - 1, 1)
        return points[-1] if points else None

    async def after(self, tenant_id: str, series: str, after_ms: int) -> list[StoredPoint]:
        """Every point newer than `after_ms`, oldest first (to catch a detector up)."""
        query = {
            "_id": {
                "$gt": point_key(tenant_id, series, after_ms),
                "$lt": point_key(tenant_id, series, 10**13 - 1),
            }
        }
        docs = await self.collection.find(query, {"t": 1, "v": 1, "s": 1}).sort("_id", 1).to_list()
        return [StoredPoint(d["t"], d["v"], d["s"]) for d in docs]

    async def delete_before(self, tenant_id: str, series: str, before_ms: int) -> int:
        """Retention: drop the series' points older than `before_ms`."""
        query = {
            "_id": {
                "$gte": point_key(tenant_id, series, 0),
                "$lt": point_key(tenant_id, series, max(before_ms, 0)),
            }
        }
        result = await self.collection.delete_many(query)
        return result.deleted_count


def retention_cutoff(now_ms: int, retention_days: int) -> int:
    return now_ms - retention_days * DAY_MS


@dataclass(slots=True)
class Checkpoint:
    version: int
    owner: str | None
    lease_until: int
    state: dict[str, Any] | None
    at_ms: int | None


class CheckpointRepository:
    """Detector state per series, under a lease: one owner at a time."""

    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self.collection = collection

    async def acquire(
        self, tenant_id: str, series: str, owner: str, now_ms: int, lease_ms: int
    ) -> Checkpoint | None:
        """Take (or renew) the series' lease; None while another owner holds it."""
        key = document_key(tenant_id, series)
        lease = {"owner": owner, "lease_until": now_ms + lease_ms}
        # Two conjunctive updates rather than one `$or` (unindexed on the embedded server):
        # renew my own lease, or take an expired one. The filter is the guard: of two
        # replicas racing for an expired lease, only one update matches.
        for guard in ({"owner": {"$eq": owner}}, {"lease_until": {"$lt": now_ms}}):
            doc = await self.collection.find_one_and_update(
                {"_id": key, **guard}, {"$set": lease}, return_document=True
            )
            if doc is not None:
                return _checkpoint(doc)
        try:
            await self.collection.insert_one(
                {"_id": key, "tenant_id": tenant_id, "series_id": series, "version": 0, **lease}
            )
        except Exception as error:  # DuplicateKeyError: another replica created it first
            if getattr(error, "code", None) != 11000:
                raise
            return None
        return Checkpoint(0, owner, now_ms + lease_ms, None, None)

    async def existing(self, tenant_id: str, series: list[str]) -> set[str]:
        """Which of these series have a checkpoint document (i.e. were ever owned)."""
        cursor = self.collection.find(keyed(tenant_id, series), {"series_id": 1})
        return {doc["series_id"] async for doc in cursor}

    async def create_many(
        self, tenant_id: str, series: list[str], owner: str, now_ms: int, lease_ms: int
    ) -> set[str]:
        """Create the checkpoints of new series, leased to `owner`, in one write; returns
        those created here (another replica may have created some first)."""
        if not series:
            return set()
        docs = [
            {"_id": document_key(tenant_id, sid), "tenant_id": tenant_id, "series_id": sid,
             "version": 0, "owner": owner, "lease_until": now_ms + lease_ms}
            for sid in series
        ]  # fmt: skip
        try:
            await self.collection.insert_many(docs, ordered=False)
        except BulkWriteError as error:
            errors = error.details["writeErrors"]
            if any(e["code"] != 11000 for e in errors):
                raise
            failed = {e["index"] for e in errors}
            return {sid for i, sid in enumerate(series) if i not in failed}
        return set(series)

    async def save(
        self,
        tenant_id: str,
        series: str,
        owner: str,
        version: int,
        state: dict[str, Any],
        at_ms: int,
        lease_until: int,
    ) -> bool:
        """Compare-and-set on (owner, version): False when the lease was lost, i.e. another
        replica may have advanced the series since; the caller drops its detector."""
        result = await self.collection.update_one(
            {
                "_id": document_key(tenant_id, series),
                "owner": {"$eq": owner},
                "version": {"$eq": version},
            },
            {
                "$set": {
                    "state": state,
                    "at_ms": at_ms,
                    "version": version + 1,
                    "lease_until": lease_until,
                }
            },
        )
        return result.modified_count == 1

    async def release(self, tenant_id: str, series: str, owner: str) -> None:
        await self.collection.update_one(
            {"_id": document_key(tenant_id, series), "owner": {"$eq": owner}},
            {"$set": {"lease_until": 0}},
        )


def _checkpoint(doc: Document) -> Checkpoint:
    return Checkpoint(
        version=doc.get("version", 0),
        owner=doc.get("owner"),
        lease_until=doc.get("lease_until", 0),
        state=doc.get("state"),
        at_ms=doc.get("at_ms"),
    )


MONITORING_INDEXES: dict[str, list[IndexModel]] = {
    # Points are read by `_id` range only (see the module docstring). The TTL index is
    # MongoDB's retention; it cannot start with tenant_id (a TTL index has one field), and
    # `expire_at` already holds each tenant's own retention.
    "metric_points": [IndexModel([("expire_at", ASCENDING)], expireAfterSeconds=0)],
    "metric_series": [
        IndexModel([("tenant_id", ASCENDING), ("id", ASCENDING)], unique=True),
        IndexModel([("tenant_id", ASCENDING), ("name", ASCENDING), ("id", ASCENDING)]),
        IndexModel([("tenant_id", ASCENDING), ("label_pairs", ASCENDING)]),
    ],
    "metric_checkpoints": [IndexModel([("tenant_id", ASCENDING), ("series_id", ASCENDING)])],
}


@dataclass(slots=True)
class MonitoringStore:
    db: AsyncDatabase[Document]
    series: SeriesRepository
    points: PointRepository
    checkpoints: CheckpointRepository


def monitoring_store(db: AsyncDatabase[Document]) -> MonitoringStore:
    return MonitoringStore(
        db=db,
        series=SeriesRepository(db["metric_series"]),
        points=PointRepository(db["metric_points"]),
        checkpoints=CheckpointRepository(db["metric_checkpoints"]),
    )


async def tenant_retentions(db: AsyncDatabase[Document]) -> dict[str, int]:
    """Every tenant's retention in days (default 30), for the retention sweep."""
    cursor = db["tenants"].find({}, {"settings.retention_days": 1})
    return {
        doc["_id"]: int(doc.get("settings", {}).get("retention_days", 30)) async for doc in cursor
    }
