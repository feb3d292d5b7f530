"""Metric series, their points with scores, and the detectors' checkpoints.

Points are stored in buckets, as MongoDB's own time-series collections do: one document
holds up to BUCKET_POINTS points of one series spanning less than BUCKET_SPAN_MS, as
parallel arrays `t` (epoch ms), `v` (values) and `s` (anomaly scores), with `first` and
`last`. An ingested batch writes one bucket per series it touches (a 1,000-point batch over
200 series is 200 documents, not 1,000): the embedded server's cost is per document, about
3x less per point at five points a bucket, 8x at fifty (docs/benchmarks.md). Buckets are
keyed `_id = "<tenant>/<series>/<ms, 13 digits>"` by the time they open (their first point
when written), so the primary index alone serves a series' time range: the buckets opened
in [start - BUCKET_SPAN_MS, end) hold every point of [start, end). Two buckets of a series
cannot open at the same millisecond, which refuses a second write of a bucket's first point
(a replay); the service only stores points newer than a series' last one. Times are
integers: the embedded server compares dates only to the second (docs/mongodb-compat.md).
`expire_at` carries MongoDB's TTL deletion of a bucket once its newest point is past the
tenant's retention (nx-27017 honours it too); the periodic sweep (`delete_before`) trims
retention exactly, point by point, on every server.

Checkpoints live in their own collection, so listing series never reads detector state.
A checkpoint is written only by the replica holding the series' lease, with a version
compare-and-set (`save_checkpoint`), so two replicas can never both advance one series.
"""

from __future__ import annotations

import heapq
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
# MongoDB's time-series defaults for second-granularity data (bucketMaxSpanSeconds 3600,
# 1,000 measurements a bucket): a range read looks an hour further back than it starts.
BUCKET_SPAN_MS = 3_600_000
BUCKET_POINTS = 1000
NEVER_MS = 10**13 - 1  # the largest time a 13-digit key holds (year 2286)


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
    """A series' points, stored in buckets (see the module docstring)."""

    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self.collection = collection

    async def insert(
        self,
        tenant_id: str,
        points: list[tuple[str, int, float, float]],
        retention_days: int,
    ) -> set[int]:
        """Store (series, at_ms, value, score) rows, each series' rows newer than its stored
        points and in time order; returns the positions of those refused as duplicates (a
        point already stored at that time, e.g. by a replay)."""
        if not points:
            return set()
        buckets = bucket_documents(tenant_id, points, timedelta(days=retention_days))
        try:
            await self.collection.insert_many([doc for doc, _ in buckets], ordered=False)
        except BulkWriteError as error:
            errors = error.details["writeErrors"]
            if any(e["code"] != 11000 for e in errors):
                raise
            # A bucket opens at its first point's time: a clash means that point, and maybe
            # more of the bucket's, are stored already. Store the rest, report the others.
            duplicates: set[int] = set()
            for e in errors:
                doc, positions = buckets[e["index"]]
                duplicates |= await self._insert_missing(
                    tenant_id, doc, positions, points, retention_days
                )
            return duplicates
        return set()

    async def _insert_missing(
        self,
        tenant_id: str,
        clashed: Document,
        positions: list[int],
        points: list[tuple[str, int, float, float]],
        retention_days: int,
    ) -> set[int]:
        first, last = clashed["first"], clashed["last"]
        # Every stored point of the bucket's time range (at most one a millisecond).
        stored = {
            p.at_ms
            for p in await self.between(
                tenant_id, clashed["series_id"], first, last + 1, last - first + 1
            )
        }
        duplicates = {i for i in positions if points[i][1] in stored}
        if not duplicates:
            # The bucket keyed at this time was trimmed by retention past its first point:
            # that time is taken, so its point is refused (and the recursion ends).
            duplicates = {positions[0]}
        rest = [i for i in positions if i not in duplicates]
        if rest:
            nested = await self.insert(tenant_id, [points[i] for i in rest], retention_days)
            duplicates |= {rest[j] for j in nested}
        return duplicates

    async def between(
        self, tenant_id: str, series: str, start_ms: int, end_ms: int, limit: int
    ) -> list[StoredPoint]:
        """Points of [start_ms, end_ms) in time order, at most `limit` (the newest kept
        when the range holds more)."""
        start_ms, end_ms = max(start_ms, 0), max(end_ms, 0)
        if start_ms >= end_ms or limit <= 0:
            return []
        cursor = self.collection.find(
            _overlapping(tenant_id, series, start_ms, end_ms), {"t": 1, "v": 1, "s": 1}
        ).sort("_id", -1)
        newest: list[tuple[int, float, float]] = []  # a min-heap of the newest `limit`
        async with cursor:
            async for doc in cursor:
                # Buckets come newest-opened first, and each holds points of less than a
                # span after its opening: once the limit-th newest point found is at least
                # that, no bucket left can hold a newer one.
                if len(newest) == limit and newest[0][0] >= _opened(doc) + BUCKET_SPAN_MS:
                    break
                for point in zip(doc["t"], doc["v"], doc["s"], strict=True):
                    if start_ms <= point[0] < end_ms:
                        if len(newest) < limit:
                            heapq.heappush(newest, point)
                        elif point[0] > newest[0][0]:
                            heapq.heapreplace(newest, point)
        return [StoredPoint(at, value, score) for at, value, score in sorted(newest)]

    async def latest(self, tenant_id: str, series: str) -> StoredPoint | None:
        points = await self.between(tenant_id, series, 0, NEVER_MS, 1)
        return points[-1] if points else None

    async def after(self, tenant_id: str, series: str, after_ms: int) -> list[StoredPoint]:
        """Every point newer than `after_ms`, oldest first (to catch a detector up)."""
        start_ms = max(after_ms + 1, 0)
        cursor = self.collection.find(
            _overlapping(tenant_id, series, start_ms, NEVER_MS), {"t": 1, "v": 1, "s": 1}
        ).sort("_id", 1)
        points = [
            StoredPoint(at, value, score)
            async for doc in cursor
            for at, value, score in zip(doc["t"], doc["v"], doc["s"], strict=True)
            if at >= start_ms
        ]
        points.sort(key=lambda p: p.at_ms)  # in order already unless a replay overlapped
        return points

    async def delete_before(self, tenant_id: str, series: str, before_ms: int) -> int:
        """Retention: drop the series' points older than `before_ms`; returns how many."""
        before_ms = max(before_ms, 0)
        query = _overlapping(tenant_id, series, 0, before_ms)
        deleted = 0
        async for doc in self.collection.find(query, {"t": 1, "v": 1, "s": 1}):
            keep = [i for i, at in enumerate(doc["t"]) if at >= before_ms]
            deleted += len(doc["t"]) - len(keep)
            if not keep:
                await self.collection.delete_one({"_id": doc["_id"]})
            elif len(keep) < len(doc["t"]):
                # The bucket keeps its `_id` (its opening time): every point it holds is
                # still within BUCKET_SPAN_MS of it, which is all the range reads assume.
                await self.collection.update_one(
                    {"_id": doc["_id"]},
                    {"$set": {
                        "first": doc["t"][keep[0]],
                        "t": [doc["t"][i] for i in keep],
                        "v": [doc["v"][i] for i in keep],
                        "s": [doc["s"][i] for i in keep],
                    }},
                )  # fmt: skip
        return deleted


def _opened(bucket: Document) -> int:
    return int(bucket["_id"][-13:])


def _overlapping(tenant_id: str, series: str, start_ms: int, end_ms: int) -> Document:
    """The series' buckets that may hold points of [start_ms, end_ms): opened before
    end_ms, and no earlier than a bucket's span before start_ms (the `_id` range), with
    their newest point at start_ms or later."""
    return {
        "_id": {
            "$gte": point_key(tenant_id, series, max(start_ms - BUCKET_SPAN_MS + 1, 0)),
            "$lt": point_key(tenant_id, series, min(end_ms, NEVER_MS)),
        },
        "last": {"$gte": start_ms},
    }


def bucket_documents(
    tenant_id: str, points: list[tuple[str, int, float, float]], keep: timedelta
) -> list[tuple[Document, list[int]]]:
    """The bucket documents of (series, at_ms, value, score) rows, each series' rows in
    time order, with the positions of the rows each one holds. A bucket holds one series'
    points of less than BUCKET_SPAN_MS from its first, BUCKET_POINTS at most; it expires
    (TTL) when its newest point does."""
    by_series: dict[str, list[int]] = {}
    for position, row in enumerate(points):
        by_series.setdefault(row[0], []).append(position)
    out: list[tuple[Document, list[int]]] = []
    for sid, positions in by_series.items():
        start = 0
        while start < len(positions):
            opened = points[positions[start]][1]
            end = start + 1
            while (
                end < len(positions)
                and end - start < BUCKET_POINTS
                and points[positions[end]][1] - opened < BUCKET_SPAN_MS
            ):
                end += 1
            held = positions[start:end]
            last = points[held[-1]][1]
            doc = {
                "_id": point_key(tenant_id, sid, opened),
                "tenant_id": tenant_id,
                "series_id": sid,
                "first": opened,
                "last": last,
                "t": [points[i][1] for i in held],
                "v": [points[i][2] for i in held],
                "s": [points[i][3] for i in held],
                "expire_at": EPOCH + timedelta(milliseconds=last) + keep,
            }
            out.append((doc, held))
            start = end
    return out


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

    async def renew(
        self, tenant_id: str, series: str, owner: str, version: int, lease_until: int
    ) -> bool:
        """Extend the owner's lease without writing the state (a compare-and-set on owner
        and version, as `save`): False when another replica took the series meanwhile."""
        result = await self.collection.update_one(
            {
                "_id": document_key(tenant_id, series),
                "owner": {"$eq": owner},
                "version": {"$eq": version},
            },
            {"$set": {"lease_until": lease_until}},
        )
        return result.matched_count == 1

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
    # Buckets are read by `_id` range only (see the module docstring). The TTL index is
    # MongoDB's retention; it cannot start with tenant_id (a TTL index has one field), and
    # `expire_at` already holds each tenant's own retention.
    "metric_buckets": [IndexModel([("expire_at", ASCENDING)], expireAfterSeconds=0)],
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
        points=PointRepository(db["metric_buckets"]),
        checkpoints=CheckpointRepository(db["metric_checkpoints"]),
    )


async def migrate_point_documents(db: AsyncDatabase[Document], chunk: int = 10_000) -> int:
    """Move points stored one document each (`metric_points`, before buckets) into buckets,
    then drop that collection; returns how many points moved. Safe to run again after an
    interruption: buckets already written are refused as duplicates and skipped."""
    old = db["metric_points"]
    if await old.find_one({}, {"_id": 1}) is None:
        return 0
    moved = 0
    batch: list[Document] = []

    async def flush() -> None:
        by_tenant: dict[str, list[Document]] = {}
        for doc in batch:
            by_tenant.setdefault(doc["tenant_id"], []).append(doc)
        for tenant_id, docs in by_tenant.items():
            keep = docs[0]["expire_at"] - (EPOCH + timedelta(milliseconds=docs[0]["t"]))
            rows = [(d["series_id"], d["t"], d["v"], d["s"]) for d in docs]
            buckets = bucket_documents(tenant_id, rows, keep)
            try:
                await db["metric_buckets"].insert_many([b for b, _ in buckets], ordered=False)
            except BulkWriteError as error:  # duplicates of an interrupted run are moved
                if any(e["code"] != 11000 for e in error.details["writeErrors"]):
                    raise
        batch.clear()

    # In `_id` order: each series' points in time order, as buckets need them.
    async for doc in old.find({}).sort("_id", 1):
        batch.append(doc)
        moved += 1
        if len(batch) >= chunk:
            await flush()
    await flush()
    await old.drop()
    return moved


async def tenant_retentions(db: AsyncDatabase[Document]) -> dict[str, int]:
    """Every tenant's retention in days (default 30), for the retention sweep."""
    cursor = db["tenants"].find({}, {"settings.retention_days": 1})
    return {
        doc["_id"]: int(doc.get("settings", {}).get("retention_days", 30)) async for doc in cursor
    }
