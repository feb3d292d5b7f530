"""Metric ingestion through the real server: per-point rejections, scores stored with the
points (equal to the detector's own), series listing and ranges, roles, tenancy, retention
and a restart that resumes the detectors from their checkpoints."""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from tests.conftest import SeededTenant
from tests.helpers import Api, ApiServer, codes, token
from tunelytics.domain.auth import Role
from tunelytics.domain.monitoring import kernels
from tunelytics.domain.monitoring.detector import SeriesDetector
from tunelytics.domain.monitoring.points import PointDraft, Reason, series_id
from tunelytics.domain.tenancy import Tenant
from tunelytics.services.monitoring import MonitoringService, MonitoringSettings
from tunelytics.storage import Storage, connect
from tunelytics.storage.monitoring import PointRepository, monitoring_store

INGEST = """mutation($points: [MetricPointInput!]!) { ingestMetrics(points: $points) {
  stored series { seriesId name labels { name value } score }
  rejected { index field code reason message } } }"""
SERIES = """query($filter: MetricSeriesFilter, $first: Int!, $after: String) {
  metricSeries(filter: $filter, first: $first, after: $after) {
    edges { cursor node { id name labels { name value } lastValue } }
    pageInfo { hasNextPage endCursor } } }"""
POINTS = """query($id: ID!, $from: DateTime, $to: DateTime, $max: Int!) { series(id: $id) {
  id name points(from: $from, to: $to, maxPoints: $max) {
    downsampled points { at value score } buckets { start count min max mean last maxScore }
  } } }"""
NOW = datetime.now(UTC).replace(microsecond=0)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def point(name: str, at: datetime, value: Any, **labels: str) -> dict[str, Any]:
    return {
        "series": name,
        "timestamp": iso(at),
        "value": value,
        "labels": [{"name": k, "value": v} for k, v in labels.items()],
    }


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text)


def minutes_ago(n: float) -> datetime:
    return NOW - timedelta(minutes=n)


async def ingest(api: Api, tok: str, points: list[dict[str, Any]]) -> dict[str, Any]:
    payload: dict[str, Any] = (await api.data(INGEST, {"points": points}, tok))["ingestMetrics"]
    return payload


def unique_name() -> str:
    return f"m_{uuid.uuid4().hex[:8]}"


async def test_valid_points_are_stored_and_each_bad_one_is_reported(
    api: Api, tenant: SeededTenant
) -> None:
    name = unique_name()
    first = await ingest(api, tenant.token(Role.INGEST), [point(name, minutes_ago(10), 1.0)])
    assert first["stored"] == 1 and first["rejected"] == []
    points = [
        point(name, minutes_ago(9), 2.0, service="api"),  # 0 another series: fine
        point(name, minutes_ago(20), 3.0),  # 1 older than the stored point
        point(name, minutes_ago(10), 3.0),  # 2 same time as the stored point
        point(name, minutes_ago(8), "NaN"),  # 3
        point(name, minutes_ago(8), "Infinity"),  # 4
        point(name, minutes_ago(8), "1e999"),  # 5 beyond a double
        point(name, NOW + timedelta(minutes=30), 1.0),  # 6
        point(name, NOW - timedelta(days=31), 1.0),  # 7 beyond the 30-day retention
        point("9bad name", minutes_ago(8), 1.0),  # 8
        point(name, minutes_ago(8), 1.0, **{"bad-label": "x"}),  # 9
        {**point(name, minutes_ago(8), 1.0), "labels": [{"name": "a", "value": "1"}] * 2},
        point(name, minutes_ago(7), "4.5"),  # 11 a numeric string is a number
        point(name, minutes_ago(7), 5.0),  # 12 same time as 11, in the same batch
        point(name, minutes_ago(6), 6),  # 13
        point(name, minutes_ago(6.5), 6),  # 14 out of order within the batch
        point(name, minutes_ago(8), True),  # 15 booleans are not numbers... (see below)
    ]
    body = await api.post(INGEST, {"points": points}, tenant.token(Role.INGEST))
    # A Boolean cannot coerce to MetricValue: that fails the request (variables are wrong),
    # like any other type error. Without it, each bad point is reported on its own.
    assert codes(body) == ["BAD_USER_INPUT"]
    payload = await ingest(api, tenant.token(Role.INGEST), points[:-1])
    assert [(r["index"], r["field"], r["reason"]) for r in payload["rejected"]] == [
        (1, "timestamp", "OUT_OF_ORDER"),
        (2, "timestamp", "DUPLICATE"),
        (3, "value", "NON_FINITE"),
        (4, "value", "NON_FINITE"),
        (5, "value", "NON_FINITE"),
        (6, "timestamp", "FUTURE"),
        (7, "timestamp", "EXPIRED"),
        (8, "name", "INVALID_NAME"),
        (9, "labels", "INVALID_LABEL"),
        (10, "labels", "INVALID_LABEL"),
        (12, "timestamp", "DUPLICATE"),
        (14, "timestamp", "OUT_OF_ORDER"),
    ]
    assert {r["code"] for r in payload["rejected"]} == {"BAD_USER_INPUT"}
    assert all(r["message"] for r in payload["rejected"])
    assert payload["stored"] == 3
    by_labels = {tuple((lb["name"], lb["value"]) for lb in s["labels"]) for s in payload["series"]}
    assert by_labels == {(), (("service", "api"),)}
    assert all(0.0 <= s["score"] <= 1.0 for s in payload["series"])

    stored = await api.data(
        POINTS, {"id": series_id(name, {}), "from": iso(minutes_ago(60)), "max": 100}, tenant.viewer
    )
    values = [(parse(p["at"]), p["value"]) for p in stored["series"]["points"]["points"]]
    assert values == [(minutes_ago(10), 1.0), (minutes_ago(7), 4.5), (minutes_ago(6), 6.0)]


async def test_numbers_json_cannot_hold_as_a_double_are_rejected_per_point(
    api: Api, tenant: SeededTenant
) -> None:
    """1e999 and a 400-digit integer are valid JSON; Python reads them as inf and a big int."""
    name = unique_name()
    raw = json.dumps({"query": INGEST, "variables": {"points": [
        point(name, minutes_ago(3), 0.0), point(name, minutes_ago(2), 0.0),
        point(name, minutes_ago(1), 0.0)]}})  # fmt: skip
    raw = raw.replace('"value": 0.0', '"value": 1e999', 1)
    raw = raw.replace('"value": 0.0', '"value": ' + "9" * 400, 1)
    response = await api.client.post(
        api.url,
        content=raw,
        headers={
            "content-type": "application/json",
            "authorization": f"Bearer {tenant.token(Role.INGEST)}",
        },
    )
    payload = response.json()["data"]["ingestMetrics"]
    assert [(r["index"], r["reason"]) for r in payload["rejected"]] == [
        (0, "NON_FINITE"),
        (1, "NON_FINITE"),
    ]
    assert payload["stored"] == 1


async def test_scores_are_the_detectors_own_and_a_spike_stands_out(
    api: Api, tenant: SeededTenant
) -> None:
    name = unique_name()
    rng = np.random.default_rng(3)
    values = list(100 + rng.normal(0, 1, 400))
    values[350] = 160.0
    start = NOW - timedelta(minutes=len(values) + 1)
    times = [start + timedelta(minutes=i) for i in range(len(values))]
    for chunk in range(0, len(values), 150):
        payload = await ingest(
            api,
            tenant.token(Role.INGEST),
            [point(name, t, v, host="a") for t, v in zip(times, values, strict=True)][
                chunk : chunk + 150
            ],
        )
        assert payload["rejected"] == []
    detector = SeriesDetector()
    expected = [detector.score_one(v, t.timestamp()) for v, t in zip(values, times, strict=True)]
    data = await api.data(
        POINTS,
        {"id": series_id(name, {"host": "a"}), "from": iso(start), "max": 2000},
        tenant.viewer,
    )
    scores = [p["score"] for p in data["series"]["points"]["points"]]
    assert len(scores) == len(values)
    assert np.allclose(scores, expected, rtol=0, atol=1e-12)
    assert scores[350] == max(scores[300:])


async def test_long_ranges_are_downsampled_into_buckets(api: Api, tenant: SeededTenant) -> None:
    name = unique_name()
    start = NOW - timedelta(minutes=200)
    values = [float(i % 10) for i in range(120)]
    await ingest(
        api,
        tenant.token(Role.INGEST),
        [point(name, start + timedelta(minutes=i), v) for i, v in enumerate(values)],
    )
    end = start + timedelta(minutes=120)
    data = await api.data(
        POINTS,
        {"id": series_id(name, {}), "from": iso(start), "to": iso(end), "max": 12},
        tenant.viewer,
    )
    result = data["series"]["points"]
    assert result["downsampled"] and result["points"] == []
    buckets = result["buckets"]
    assert len(buckets) == 12
    assert [b["count"] for b in buckets] == [10] * 12
    assert all(b["min"] == 0 and b["max"] == 9 and b["last"] == 9 for b in buckets)
    assert all(math.isclose(b["mean"], 4.5) for b in buckets)
    assert parse(buckets[1]["start"]) == start + timedelta(minutes=10)
    bad = await api.post(POINTS, {"id": series_id(name, {}), "max": 0}, tenant.viewer)
    assert codes(bad) == ["BAD_USER_INPUT"]


async def test_series_are_listed_by_name_with_label_filters_and_cursors(
    api: Api, tenant: SeededTenant
) -> None:
    prefix = unique_name()
    await ingest(
        api,
        tenant.admin,
        [
            point(f"{prefix}_{i}", minutes_ago(1), float(i), service=f"s{i % 2}", region="eu")
            for i in range(5)
        ],
    )
    seen: list[str] = []
    after = None
    while True:
        data = await api.data(
            SERIES,
            {
                "filter": {
                    "labels": [
                        {"name": "service", "value": "s0"},
                        {"name": "region", "value": "eu"},
                    ]
                },
                "first": 2,
                "after": after,
            },
            tenant.viewer,
        )
        page = data["metricSeries"]
        seen += [e["node"]["name"] for e in page["edges"] if e["node"]["name"].startswith(prefix)]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == [f"{prefix}_0", f"{prefix}_2", f"{prefix}_4"]
    by_name = await api.data(
        SERIES, {"filter": {"name": f"{prefix}_3"}, "first": 10}, tenant.viewer
    )
    (edge,) = by_name["metricSeries"]["edges"]
    assert edge["node"]["labels"] == [
        {"name": "region", "value": "eu"},
        {"name": "service", "value": "s1"},
    ]


async def test_roles_decide_who_ingests_and_who_reads(api: Api, tenant: SeededTenant) -> None:
    name = unique_name()
    one = [point(name, minutes_ago(1), 1.0)]
    for role in (Role.VIEWER, Role.ANALYST):
        body = await api.post(INGEST, {"points": one}, tenant.token(role))
        assert codes(body) == ["FORBIDDEN"]
    assert (await ingest(api, tenant.admin, one))["stored"] == 1
    body = await api.post(SERIES, {"first": 5}, tenant.token(Role.INGEST))
    assert codes(body) == ["FORBIDDEN"]
    assert codes(await api.post(INGEST, {"points": one})) == ["UNAUTHENTICATED"]
    unregistered = token(f"nobody-{uuid.uuid4().hex[:6]}", Role.INGEST)
    assert codes(await api.post(INGEST, {"points": one}, unregistered)) == ["FORBIDDEN"]
    too_many = [point(name, minutes_ago(1), 1.0)] * 1001
    assert codes(await api.post(INGEST, {"points": too_many}, tenant.admin)) == ["BAD_USER_INPUT"]


async def test_two_tenants_with_the_same_series_never_see_each_other(
    api: Api, tenant: SeededTenant, other_tenant: SeededTenant
) -> None:
    name = unique_name()
    await ingest(api, tenant.admin, [point(name, minutes_ago(2), 1.0, service="api")])
    await ingest(api, other_tenant.admin, [point(name, minutes_ago(2), 50.0, service="api")])
    # The same series ID in both tenants; and a point at the same time is not a duplicate.
    sid = series_id(name, {"service": "api"})
    for owner, value in ((tenant, 1.0), (other_tenant, 50.0)):
        data = await api.data(
            POINTS, {"id": sid, "from": iso(minutes_ago(60)), "max": 10}, owner.viewer
        )
        assert [p["value"] for p in data["series"]["points"]["points"]] == [value]
        listed = await api.data(SERIES, {"filter": {"name": name}, "first": 10}, owner.viewer)
        assert [e["node"]["lastValue"] for e in listed["metricSeries"]["edges"]] in (
            [value],
            [None],
        )
    stranger = token(f"t-{uuid.uuid4().hex[:10]}", Role.ADMIN)
    body = await api.post(POINTS, {"id": sid, "max": 10}, stranger)
    assert body["data"]["series"] is None


async def test_retention_deletes_points_older_than_the_tenants_setting(
    storage: Storage,
) -> None:
    tenant_id = f"t-{uuid.uuid4().hex[:10]}"
    await storage.tenants.create(Tenant(id=tenant_id, name="Retention", retention_days=2))
    other = f"t-{uuid.uuid4().hex[:10]}"
    await storage.tenants.create(Tenant(id=other, name="Other", retention_days=30))
    store = monitoring_store(storage.db)
    service = MonitoringService(store)
    day = 86_400_000
    now = int(datetime.now(UTC).timestamp() * 1000)
    for tid in (tenant_id, other):
        await store.series.ensure(tid, [_key("cpu")])
        await store.points.insert(
            tid, [(_key("cpu").id, now - d * day, float(d), 0.0) for d in (5, 3, 1, 0)], 30
        )
    assert await service.sweep_retention(tenant_id, 2) == 2
    left = await store.points.between(tenant_id, _key("cpu").id, 0, now + 1, 100)
    assert [p.value for p in left] == [1.0, 0.0]
    kept = await store.points.between(other, _key("cpu").id, 0, now + 1, 100)
    assert [p.value for p in kept] == [5.0, 3.0, 1.0, 0.0]


def _key(name: str) -> Any:
    from tunelytics.domain.monitoring.points import series_key

    return series_key(name, {})


async def test_a_restarted_server_resumes_the_detectors_where_they_stopped(
    mongo_url: str, tmp_path: Path
) -> None:
    database = f"restart_{uuid.uuid4().hex[:8]}"
    storage = connect(mongo_url, database)
    tenant_id = "restarted"
    await storage.ensure_indexes()
    await storage.tenants.create(Tenant(id=tenant_id, name="Restarted"))
    await storage.close()
    env = {"MONGODB_URL": mongo_url, "MONGODB_DATABASE": database, "REDIS_URL": ""}
    rng = np.random.default_rng(11)
    values = list(np.round(10 + np.sin(np.arange(300) / 9) + rng.normal(0, 0.2, 300), 4))
    values[250] = 25.0
    start = NOW - timedelta(minutes=400)
    times = [start + timedelta(minutes=i) for i in range(len(values))]
    points = [point("cpu", t, v, host="h1") for t, v in zip(times, values, strict=True)]
    tok = token(tenant_id, Role.ADMIN)
    for half in (points[:180], points[180:]):
        server = ApiServer(env, tmp_path / "server.log").start()
        try:
            async with httpx.AsyncClient(timeout=30) as client:
                api = Api(server.graphql_url, client)
                assert (await ingest(api, tok, half))["stored"] == len(half)
        finally:
            server.stop()
    server = ApiServer(env, tmp_path / "server.log").start()
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            data = await Api(server.graphql_url, client).data(
                POINTS,
                {"id": series_id("cpu", {"host": "h1"}), "from": iso(start), "max": 1000},
                tok,
            )
    finally:
        server.stop()
    detector = SeriesDetector()
    expected = [detector.score_one(v, t.timestamp()) for v, t in zip(values, times, strict=True)]
    scores = [p["score"] for p in data["series"]["points"]["points"]]
    assert np.allclose(scores, expected, rtol=0, atol=1e-12)
    # Relearning from scratch after the restart would have scored differently.
    fresh = SeriesDetector()
    relearned = [
        fresh.score_one(v, t.timestamp()) for v, t in zip(values[180:], times[180:], strict=True)
    ]
    assert not np.allclose(scores[180:], relearned, rtol=0, atol=1e-6)


async def test_replay_streams_a_csv_into_a_tenant_through_the_api(
    api: Api, server: ApiServer, tenant: SeededTenant, tmp_path: Path
) -> None:
    csv = tmp_path / "series.csv"
    rows = [f"2014-04-01 00:{m:02d}:00,{10 + (m % 3)}" for m in range(40)]
    csv.write_text("timestamp,value\n" + "\n".join(rows) + "\nnot a row\n")
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "tunelytics", "replay", str(csv), "--tenant", tenant.id,
         "--series", "replayed", "--label", "source=nab", "--speed", "600",
         "--url", server.graphql_url, "--token", tenant.token(Role.INGEST)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "stored 40 points, 0 rejected" in done.stdout
    data = await api.data(
        POINTS, {"id": series_id("replayed", {"source": "nab"}), "max": 100}, tenant.viewer
    )
    assert [p["value"] for p in data["series"]["points"]["points"]] == [
        float(10 + (m % 3)) for m in range(40)
    ]


async def test_a_lease_is_renewed_without_rewriting_the_detector_state(
    storage: Storage,
) -> None:
    """Half-way through its lease an owner renews it; the state is written only when a
    checkpoint is due (points, age, shutdown), not at every renewal. Another replica
    still cannot take the series, and a renewal after a takeover is refused."""
    tenant_id = f"t-{uuid.uuid4().hex[:10]}"
    await storage.tenants.create(Tenant(id=tenant_id, name="Renewals"))
    store = monitoring_store(storage.db)
    settings = MonitoringSettings(lease_ms=600, checkpoint_seconds=3_600)
    owner = MonitoringService(store, settings, owner="owner")
    other = MonitoringService(store, MonitoringSettings(lease_ms=60_000), owner="other")
    start = int(datetime.now(UTC).timestamp() * 1000) - 4 * 3_600_000
    sid = series_id("cpu", {})

    def point(i: int) -> list[PointDraft]:
        return [PointDraft("cpu", (), start + i * 60_000, float(i % 7))]

    assert (await owner.ingest(tenant_id, point(0), 30)).stored == 1
    checkpoints = storage.db["metric_checkpoints"]
    key = {"tenant_id": tenant_id, "series_id": sid}
    for i in range(1, 5):  # 1.2 s: twice the lease, renewed by each flush past its half
        await asyncio.sleep(0.3)
        await owner.flush()
        assert (await owner.ingest(tenant_id, point(i), 30)).stored == 1
        refused = await other.ingest(tenant_id, point(100 + i), 30)
        assert [r.reason for r in refused.rejected] == [Reason.OWNED_ELSEWHERE]
    doc = await checkpoints.find_one(key)
    assert doc is not None and doc["owner"] == "owner"
    assert doc["version"] == 0 and "state" not in doc  # renewed, never checkpointed
    assert doc["lease_until"] > int(datetime.now(UTC).timestamp() * 1000)
    await owner.flush(everything=True)
    doc = await checkpoints.find_one(key)
    assert doc is not None and doc["version"] == 1 and doc["state"] is not None
    # A renewal is a compare-and-set on (owner, version), as a checkpoint is.
    assert not await store.checkpoints.renew(tenant_id, sid, "owner", 0, 10**13)
    assert not await store.checkpoints.renew(tenant_id, sid, "other", 1, 10**13)
    assert await store.checkpoints.renew(tenant_id, sid, "owner", 1, 10**13)


async def test_one_owner_per_series_and_a_takeover_fences_the_old_owner(
    storage: Storage,
) -> None:
    """Two replicas on one database: the second is refused a series the first holds;
    once the lease expires it takes the series over, with the same detector state, and
    the first replica's next checkpoint is refused (compare-and-set), so it stops."""
    tenant_id = f"t-{uuid.uuid4().hex[:10]}"
    await storage.tenants.create(Tenant(id=tenant_id, name="Leases"))
    store = monitoring_store(storage.db)
    first = MonitoringService(store, MonitoringSettings(lease_ms=300), owner="first")
    second = MonitoringService(store, MonitoringSettings(lease_ms=60_000), owner="second")
    # The detector's compiled loops ready, as the server has them before it ingests: a
    # first compile (seconds) would outlast the 300 ms lease.
    await asyncio.to_thread(kernels.warm_up)
    start = int(datetime.now(UTC).timestamp() * 1000) - 3_600_000
    values = [float(v) for v in np.random.default_rng(2).normal(10, 1, 60)]

    def drafts(rows: range) -> list[PointDraft]:
        return [PointDraft("cpu", (("host", "a"),), start + i * 60_000, values[i]) for i in rows]

    taken = await first.ingest(tenant_id, drafts(range(0, 30)), 30)
    assert taken.stored == 30
    refused = await second.ingest(tenant_id, drafts(range(30, 31)), 30)
    assert refused.stored == 0
    assert [r.reason for r in refused.rejected] == [Reason.OWNED_ELSEWHERE]
    await asyncio.sleep(0.4)  # the first replica's lease runs out (it renews nothing)
    moved = await second.ingest(tenant_id, drafts(range(30, 60)), 30)
    assert moved.stored == 30
    detector = SeriesDetector()
    expected = [detector.score_one(v, (start + i * 60_000) / 1000) for i, v in enumerate(values)]
    sid = series_id("cpu", {"host": "a"})
    stored = await monitoring_store(storage.db).points.between(tenant_id, sid, 0, 10**13 - 1, 100)
    assert np.allclose([p.score for p in stored], expected, rtol=0, atol=1e-12)
    # The first replica still holds its old detector, but its lease ran out: it must
    # take the series again, and cannot while the second holds it.
    late = await first.ingest(
        tenant_id, [PointDraft("cpu", (("host", "a"),), start + 61 * 60_000, 10.0)], 30
    )
    assert late.stored == 0 and [r.reason for r in late.rejected] == [Reason.OWNED_ELSEWHERE]
    assert (tenant_id, sid) not in first.owned
    # Checkpoints are a compare-and-set on (owner, version): only the owner's current
    # version is accepted, once.
    version = second.owned[(tenant_id, sid)].version
    state = SeriesDetector().state()
    assert not await store.checkpoints.save(tenant_id, sid, "first", version, state, 1, 10**13)
    assert await store.checkpoints.save(tenant_id, sid, "second", version, state, 1, 10**13)
    assert not await store.checkpoints.save(tenant_id, sid, "second", version, state, 1, 10**13)


class HeldInserts(PointRepository):
    """Points whose insert waits until `release` is set, for the batches that carry a
    point of `series`: a batch stopped half-way, on the database."""

    def __init__(self, points: PointRepository, series: str) -> None:
        super().__init__(points.collection)
        self.series = series
        self.release = asyncio.Event()
        self.waiting = asyncio.Event()

    async def insert(
        self, tenant_id: str, points: list[tuple[str, int, float, float]], retention_days: int
    ) -> set[int]:
        if any(row[0] == self.series for row in points):
            self.waiting.set()
            await self.release.wait()
        return await super().insert(tenant_id, points, retention_days)


async def test_concurrent_batches_of_one_series_lose_nothing_and_score_in_order(
    storage: Storage,
) -> None:
    """A second batch of a series that arrives while the first waits on the database (a
    client's retry of it, plus newer points) waits for it: the retried points are refused
    and the detector learns each point once, in time order. A batch of other series is
    not held up meanwhile."""
    tenant_id = f"t-{uuid.uuid4().hex[:10]}"
    await storage.tenants.create(Tenant(id=tenant_id, name="Concurrent"))
    store = monitoring_store(storage.db)
    sid = series_id("cpu", {"host": "a"})
    held = HeldInserts(store.points, sid)
    store.points = held
    service = MonitoringService(store)
    start = int(datetime.now(UTC).timestamp() * 1000) - 3_600_000
    values = [float(v) for v in np.random.default_rng(3).normal(10, 1, 60)]

    def drafts(host: str, rows: range) -> list[PointDraft]:
        return [PointDraft("cpu", (("host", host),), start + i * 60_000, values[i]) for i in rows]

    first = asyncio.create_task(service.ingest(tenant_id, drafts("a", range(0, 30)), 30))
    await asyncio.wait_for(held.waiting.wait(), 30)
    second = asyncio.create_task(service.ingest(tenant_id, drafts("a", range(0, 60)), 30))
    other = await asyncio.wait_for(service.ingest(tenant_id, drafts("b", range(0, 60)), 30), 30)
    assert other.stored == 60
    assert not first.done() and not second.done()
    held.release.set()
    assert [(await first).stored, (await second).stored] == [30, 30]
    assert (await first).rejected == []
    retried = [(r.index, r.reason) for r in (await second).rejected]
    assert retried == [(i, Reason.OUT_OF_ORDER) for i in range(29)] + [(29, Reason.DUPLICATE)]
    detector = SeriesDetector()
    expected = [detector.score_one(v, (start + i * 60_000) / 1000) for i, v in enumerate(values)]
    stored = await store.points.between(tenant_id, sid, 0, 10**13 - 1, 100)
    assert [p.value for p in stored] == values
    assert np.allclose([p.score for p in stored], expected, rtol=0, atol=1e-12)
    owned = service.owned[(tenant_id, sid)]
    assert owned.last_at == start + 59 * 60_000 and owned.unsaved == 60
