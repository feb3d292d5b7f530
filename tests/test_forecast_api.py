"""Forecasts through the real server: business series from listens, metric series,
stored predictions, roles, tenancy and refusals."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.conftest import SeededTenant
from tests.helpers import Api, codes
from tunelytics.domain.auth import Role
from tunelytics.domain.predict.business import FORECASTER_VERSION
from tunelytics.storage import Storage
from tunelytics.storage.predictions import ListenSeriesRepository

FORECAST = """mutation(
  $series: BusinessSeriesInput, $seriesId: ID, $horizon: Int!, $interval: Float
) { forecast(series: $series, seriesId: $seriesId, horizon: $horizon, interval: $interval) {
    id kind subject stepSeconds level model modelVersion createdAt
    points { at mean lower upper }
    backtest { origins mae mase coverage candidates { model mae } } } }"""
PREDICTIONS = """query($kind: PredictionKind, $series: BusinessSeriesInput, $seriesId: ID) {
  predictions(kind: $kind, series: $series, seriesId: $seriesId) {
    id kind subject model points { at mean } backtest { candidates { model mae } } } }"""
INGEST = """mutation($points: [MetricPointInput!]!) { ingestMetrics(points: $points) {
  stored series { seriesId } rejected { index reason } } }"""
ADD_ARTIST = """mutation($a: [ArtistInput!]!) { upsertArtists(artists: $a) { artists { id } } }"""

STREAMS = {"kind": "STREAMS"}
SINCE = datetime(2000, 1, 1, tzinfo=UTC)


def hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


async def forecast(api: Api, tok: str, **variables: Any) -> dict[str, Any]:
    return await api.post(FORECAST, variables, tok)


async def test_streams_and_active_listeners_are_counted_by_the_database(
    storage: Storage, tenant: SeededTenant, other_tenant: SeededTenant
) -> None:
    repo = ListenSeriesRepository(storage.db)
    for seeded in (tenant, other_tenant):  # same IDs, different listens
        listens = seeded.demo.listens
        got = await repo.streams(seeded.id, timedelta(hours=1), SINCE, None)
        assert got == Counter(hour(li.played_at) for li in listens)
        artist = seeded.demo.artists[0].id
        tracks = [t.id for t in seeded.demo.tracks if t.artist_id == artist]
        got = await repo.streams(seeded.id, timedelta(hours=1), SINCE, tracks)
        assert got == Counter(hour(li.played_at) for li in listens if li.track_id in tracks)
        days: dict[datetime, set[str]] = defaultdict(set)
        for li in listens:
            days[li.played_at.replace(hour=0, minute=0, second=0, microsecond=0)].add(
                li.listener_id
            )
        got = await repo.active_listeners(seeded.id, timedelta(days=1), SINCE, None)
        assert got == {day: len(who) for day, who in days.items()}
    # The history window: only listens from `since` on.
    cut = hour(sorted(li.played_at for li in tenant.demo.listens)[150])
    got = await repo.streams(tenant.id, timedelta(hours=1), cut, None)
    assert got == Counter(hour(li.played_at) for li in tenant.demo.listens if li.played_at >= cut)


async def test_an_analyst_forecasts_streams_and_a_viewer_reads_the_stored_prediction(
    api: Api, tenant: SeededTenant
) -> None:
    body = await forecast(api, tenant.token(Role.ANALYST), series=STREAMS, horizon=24)
    assert "errors" not in body, body
    result = body["data"]["forecast"]
    assert result["kind"] == "STREAMS" and result["subject"] == "tenant"
    assert result["stepSeconds"] == 3600 and result["level"] == 0.8
    assert result["modelVersion"] == f"{FORECASTER_VERSION}/{result['model']}"
    points = result["points"]
    assert len(points) == 24
    last = max(li.played_at for li in tenant.demo.listens)
    times = [datetime.fromisoformat(p["at"]) for p in points]
    assert times == [hour(last) + timedelta(hours=h + 1) for h in range(24)]
    assert all(p["lower"] <= p["mean"] <= p["upper"] for p in points)
    assert result["backtest"]["origins"] > 0 and result["backtest"]["mae"] >= 0
    tried = result["backtest"]["candidates"]
    assert len(tried) >= 2 and [c["mae"] for c in tried] == sorted(c["mae"] for c in tried)
    assert result["model"] in {c["model"] for c in tried}

    stored = await api.post(PREDICTIONS, {"series": STREAMS}, tenant.viewer)
    assert "errors" not in stored, stored
    assert stored["data"]["predictions"][0]["id"] == result["id"]
    assert stored["data"]["predictions"][0]["points"][0]["mean"] == points[0]["mean"]
    assert stored["data"]["predictions"][0]["backtest"]["candidates"] == tried

    refused = await forecast(api, tenant.viewer, series=STREAMS, horizon=24)
    assert codes(refused) == ["FORBIDDEN"]


async def test_artist_track_and_active_listener_forecasts(api: Api, tenant: SeededTenant) -> None:
    artist = tenant.demo.artists[0].id
    body = await forecast(
        api, tenant.admin, series={"kind": "STREAMS", "artistId": artist}, horizon=6,
        interval=0.95,
    )  # fmt: skip
    assert "errors" not in body, body
    assert body["data"]["forecast"]["subject"] == f"artist:{artist}"
    assert body["data"]["forecast"]["level"] == 0.95
    busiest = Counter(li.track_id for li in tenant.demo.listens).most_common(1)[0][0]
    body = await forecast(
        api, tenant.admin, series={"kind": "STREAMS", "trackId": busiest}, horizon=3
    )
    assert "errors" not in body, body
    assert body["data"]["forecast"]["subject"] == f"track:{busiest}"
    body = await forecast(api, tenant.admin, series={"kind": "ACTIVE_LISTENERS"}, horizon=3)
    assert "errors" not in body, body
    assert body["data"]["forecast"]["stepSeconds"] == 86400
    assert len(body["data"]["forecast"]["points"]) == 3


async def test_unknown_series_and_bad_horizons_are_clear_errors(
    api: Api, tenant: SeededTenant
) -> None:
    tok = tenant.admin
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"series": {"kind": "STREAMS", "trackId": "no-such"}, "horizon": 3}, "NOT_FOUND", "track"),
        ({"series": {"kind": "STREAMS", "artistId": "no-such"}, "horizon": 3}, "NOT_FOUND", ""),
        ({"seriesId": "no-such", "horizon": 3}, "NOT_FOUND", "metric series"),
        # 20 days of hourly history cannot support a 400-hour horizon.
        ({"series": STREAMS, "horizon": 400}, "BAD_USER_INPUT", "not enough data"),
        ({"series": STREAMS, "horizon": 0}, "BAD_USER_INPUT", "horizon"),
        ({"series": STREAMS, "horizon": 5, "interval": 1.5}, "BAD_USER_INPUT", "interval"),
        ({"series": STREAMS, "seriesId": "x", "horizon": 5}, "BAD_USER_INPUT", "exactly one"),
        ({"horizon": 5}, "BAD_USER_INPUT", "exactly one"),
        (
            {"series": {"kind": "ACTIVE_LISTENERS", "artistId": "ar-0001"}, "horizon": 2},
            "BAD_USER_INPUT",
            "whole tenant",
        ),
    ]
    for variables, code, words in cases:
        body = await forecast(api, tok, **variables)
        assert codes(body) == [code], (variables, body)
        assert words in body["errors"][0]["message"], body
    body = await forecast(api, tok, series=STREAMS, horizon=400)
    assert body["errors"][0]["extensions"]["reason"] == "NOT_ENOUGH_DATA"


async def test_a_tenant_cannot_forecast_or_read_another_tenants_series(
    api: Api, tenant: SeededTenant, other_tenant: SeededTenant
) -> None:
    only_a = f"ar-only-{tenant.id}"
    await api.data(ADD_ARTIST, {"a": [{"id": only_a, "name": "Only A"}]}, tenant.admin)
    # A has the artist (no listens yet: not enough data); for B it does not exist.
    body = await forecast(
        api, tenant.admin, series={"kind": "STREAMS", "artistId": only_a}, horizon=3
    )
    assert codes(body) == ["BAD_USER_INPUT"] and "no listens" in body["errors"][0]["message"]
    body = await forecast(
        api, other_tenant.admin, series={"kind": "STREAMS", "artistId": only_a}, horizon=3
    )
    assert codes(body) == ["NOT_FOUND"]

    made = await forecast(api, tenant.admin, series=STREAMS, horizon=12)
    assert "errors" not in made, made
    seen = await api.post(PREDICTIONS, {}, other_tenant.viewer)
    assert made["data"]["forecast"]["id"] not in {p["id"] for p in seen["data"]["predictions"]}

    # The same artist ID in both tenants: each forecast reads its own tenant's listens.
    shared = tenant.demo.artists[0].id
    a = await forecast(api, tenant.admin, series={"kind": "STREAMS", "artistId": shared}, horizon=4)
    b = await forecast(
        api, other_tenant.admin, series={"kind": "STREAMS", "artistId": shared}, horizon=4
    )
    assert "errors" not in a and "errors" not in b, (a, b)
    assert a["data"]["forecast"]["points"] != b["data"]["forecast"]["points"]

    # A metric series of A is unknown to B.
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    name = f"fc_{tenant.id.replace('-', '_')}"
    points = [
        {"series": name, "timestamp": (now - timedelta(minutes=5 * (200 - i))).isoformat(),
         "value": 10.0 + (i % 12)}
        for i in range(200)
    ]  # fmt: skip
    ingested = await api.data(INGEST, {"points": points}, tenant.token(Role.INGEST))
    assert ingested["ingestMetrics"]["rejected"] == []
    series_id = ingested["ingestMetrics"]["series"][0]["seriesId"]
    mine = await forecast(api, tenant.admin, seriesId=series_id, horizon=12)
    assert "errors" not in mine, mine
    assert mine["data"]["forecast"]["kind"] == "METRIC"
    assert mine["data"]["forecast"]["stepSeconds"] == 300
    theirs = await forecast(api, other_tenant.admin, seriesId=series_id, horizon=12)
    assert codes(theirs) == ["NOT_FOUND"]
    stored = await api.post(PREDICTIONS, {"seriesId": series_id}, other_tenant.viewer)
    assert stored["data"]["predictions"] == []
