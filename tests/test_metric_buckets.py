"""Metric points stored in buckets (storage/monitoring.py) on the real MongoDB-wire server:
one document per series per batch, cut at an hour's span and 1,000 points; range reads
exact at the edges and across buckets; replays refused point by point; retention trimmed
point by point; points of the old one-document-a-point layout migrated."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from tunelytics.domain.monitoring.points import StoredPoint
from tunelytics.storage import Storage
from tunelytics.storage.monitoring import (
    BUCKET_POINTS,
    BUCKET_SPAN_MS,
    EPOCH,
    migrate_point_documents,
    monitoring_store,
    point_key,
)

# Recent, so that no bucket has expired (a TTL index deletes those).
T0 = (int(datetime.now(UTC).timestamp()) // 3600 - 48) * 3_600_000
MINUTE = 60_000


def _tenant() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


def _rows(series: str, times: list[int]) -> list[tuple[str, int, float, float]]:
    return [(series, at, float(at - T0) / MINUTE, 0.5) for at in times]


async def _buckets(storage: Storage, tenant_id: str) -> list[dict[str, object]]:
    return await storage.db["metric_buckets"].find({"tenant_id": tenant_id}).to_list()


async def test_a_batch_is_one_bucket_per_series_cut_at_the_span_and_size(
    storage: Storage,
) -> None:
    tenant_id = _tenant()
    store = monitoring_store(storage.db)
    minutes = [T0 + i * MINUTE for i in range(50)]
    seconds = [T0 + i * 1000 for i in range(BUCKET_POINTS + 5)]
    batch = _rows("a", minutes) + _rows("b", minutes[:3]) + _rows("c", seconds)
    assert await store.points.insert(tenant_id, batch, 30) == set()
    buckets = await _buckets(storage, tenant_id)
    sizes = sorted((str(b["series_id"]), len(b["t"])) for b in buckets)  # type: ignore[arg-type]
    assert sizes == [("a", 50), ("b", 3), ("c", 5), ("c", BUCKET_POINTS)]
    # Two hours of minutes: cut where a bucket would span an hour or more.
    other = _tenant()
    await store.points.insert(other, _rows("a", [T0 + i * MINUTE for i in range(120)]), 30)
    spans = sorted(
        (int(b["first"]), int(b["last"]))
        for b in await _buckets(storage, other)  # type: ignore[call-overload]
    )
    assert spans == [(T0, T0 + 59 * MINUTE), (T0 + 60 * MINUTE, T0 + 119 * MINUTE)]
    assert all(last - first < BUCKET_SPAN_MS for first, last in spans)
    stored = await store.points.between(other, "a", 0, T0 + 10**9, 1000)
    assert [p.at_ms for p in stored] == [T0 + i * MINUTE for i in range(120)]
    # The bucket expires (TTL) with its newest point.
    first = min(await _buckets(storage, other), key=lambda b: b["first"])  # type: ignore[arg-type, return-value]
    expire = first["expire_at"]
    assert isinstance(expire, datetime)
    assert expire == EPOCH + timedelta(milliseconds=T0 + 59 * MINUTE, days=30)


async def test_ranges_are_exact_at_their_edges_and_keep_the_newest(storage: Storage) -> None:
    tenant_id = _tenant()
    store = monitoring_store(storage.db)
    # Five batches of 30 points every 5 minutes: buckets of 30 and of 12 points.
    times = [T0 + i * 5 * MINUTE for i in range(150)]
    for k in range(5):
        await store.points.insert(tenant_id, _rows("cpu", times[30 * k : 30 * (k + 1)]), 30)
    everything = await store.points.between(tenant_id, "cpu", 0, T0 + 10**10, 1000)
    assert [p.at_ms for p in everything] == times
    assert everything[7] == StoredPoint(times[7], 35.0, 0.5)
    # [start, end): the start included, the end not, mid-bucket on both sides.
    window = await store.points.between(tenant_id, "cpu", times[13], times[71], 1000)
    assert [p.at_ms for p in window] == times[13:71]
    # The newest `limit` of the range, in time order.
    newest = await store.points.between(tenant_id, "cpu", times[13], times[71], 20)
    assert [p.at_ms for p in newest] == times[51:71]
    latest = await store.points.latest(tenant_id, "cpu")
    assert latest is not None and latest.at_ms == times[-1]
    later = await store.points.after(tenant_id, "cpu", times[88])
    assert [p.at_ms for p in later] == times[89:]
    assert await store.points.between(tenant_id, "cpu", times[-1] + 1, T0 + 10**10, 10) == []
    assert await store.points.latest(tenant_id, "other-series") is None
    assert await store.points.latest(_tenant(), "cpu") is None


async def test_a_replayed_batch_stores_only_its_new_points(storage: Storage) -> None:
    tenant_id = _tenant()
    store = monitoring_store(storage.db)
    stored = [T0 + i * 2 * MINUTE for i in range(10)]  # even minutes
    assert await store.points.insert(tenant_id, _rows("q", stored), 30) == set()
    # A replay from the first stored point, with odd minutes in between and after.
    replay = [T0 + i * MINUTE for i in range(24)]
    duplicates = await store.points.insert(tenant_id, _rows("q", replay), 30)
    assert duplicates == {i for i, at in enumerate(replay) if at in set(stored)}
    got = await store.points.between(tenant_id, "q", 0, T0 + 10**9, 1000)
    assert [p.at_ms for p in got] == sorted(set(stored) | set(replay))
    newest = await store.points.between(tenant_id, "q", 0, T0 + 10**9, 5)
    assert [p.at_ms for p in newest] == replay[-5:]
    after = await store.points.after(tenant_id, "q", T0 + 4 * MINUTE)
    assert [p.at_ms for p in after] == [T0 + i * MINUTE for i in range(5, 24)]


async def test_retention_trims_a_bucket_point_by_point(storage: Storage) -> None:
    tenant_id = _tenant()
    store = monitoring_store(storage.db)
    times = [T0 + i * MINUTE for i in range(40)]
    await store.points.insert(tenant_id, _rows("r", times), 30)
    assert await store.points.delete_before(tenant_id, "r", times[25]) == 25
    left = await store.points.between(tenant_id, "r", 0, T0 + 10**9, 1000)
    assert [p.at_ms for p in left] == times[25:]
    assert await store.points.delete_before(tenant_id, "r", times[25]) == 0
    assert await store.points.delete_before(tenant_id, "r", T0 + 10**9) == 15
    assert await _buckets(storage, tenant_id) == []


async def test_points_of_the_one_document_a_point_layout_move_into_buckets(
    storage: Storage,
) -> None:
    # Its own database: the migration moves every tenant's points of the old collection.
    db = storage.client[f"migrate_{uuid.uuid4().hex[:8]}"]
    try:
        tenant_id = _tenant()
        times = [T0 + i * MINUTE for i in range(70)]
        await db["metric_points"].insert_many(
            [
                {
                    "_id": point_key(tenant_id, sid, at),
                    "tenant_id": tenant_id,
                    "series_id": sid,
                    "t": at,
                    "v": float(i),
                    "s": 0.25,
                    "expire_at": EPOCH + timedelta(milliseconds=at, days=7),
                }
                for sid in ("x", "y")
                for i, at in enumerate(times)
            ]
        )
        assert await migrate_point_documents(db, chunk=50) == 140
        store = monitoring_store(db)
        for sid in ("x", "y"):
            got = await store.points.between(tenant_id, sid, 0, T0 + 10**9, 1000)
            assert got == [StoredPoint(at, float(i), 0.25) for i, at in enumerate(times)]
        assert "metric_points" not in await db.list_collection_names()
        assert await migrate_point_documents(db) == 0
        newest = max(await db["metric_buckets"].find({}).to_list(), key=lambda b: b["last"])
        assert newest["expire_at"] == datetime.fromtimestamp(times[-1] / 1000, UTC) + timedelta(
            days=7
        )
    finally:
        await storage.client.drop_database(db.name)


async def test_a_point_at_the_opening_time_of_a_trimmed_bucket_is_refused_alone(
    storage: Storage,
) -> None:
    tenant_id = _tenant()
    store = monitoring_store(storage.db)
    times = [T0 + i * MINUTE for i in range(10)]
    await store.points.insert(tenant_id, _rows("k", times), 30)
    assert await store.points.delete_before(tenant_id, "k", times[3]) == 3
    # A bucket opening at times[0] exists (trimmed to times[3:]): that key is taken.
    again = _rows("k", [times[0], times[1]])
    assert await store.points.insert(tenant_id, again, 30) == {0}
    got = await store.points.between(tenant_id, "k", 0, T0 + 10**9, 100)
    assert [p.at_ms for p in got] == [times[1], *times[3:]]


async def test_a_replay_into_a_fuller_bucket_refuses_exactly_the_repeated_times(
    storage: Storage,
) -> None:
    """The stored bucket holds more points than the replayed one: each stored time the
    replay repeats is refused, first, middle or last, and the new time is stored."""
    tenant_id = _tenant()
    store = monitoring_store(storage.db)
    times = [T0 + i * MINUTE for i in range(21)]
    await store.points.insert(tenant_id, _rows("f", times), 30)
    replay = [times[0], times[10] + 1, times[10], times[20]]
    replay.sort()
    assert await store.points.insert(tenant_id, _rows("f", replay), 30) == {0, 1, 3}
    got = await store.points.between(tenant_id, "f", 0, T0 + 10**9, 100)
    assert [p.at_ms for p in got] == sorted([*times, times[10] + 1])
