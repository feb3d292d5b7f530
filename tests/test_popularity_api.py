"""Track popularity through the real server: a POPULARITY model trained per tenant and
served from the registry on counts from the database, rising tracks, refusals, fresh
scores after new listens, and tenancy with the same track IDs in two tenants."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

from tests.conftest import SMALL
from tests.helpers import Api, codes, record_listens, token
from tests.predict_training import finished, metrics, start, train, versions
from tunelytics.domain.auth import Role
from tunelytics.domain.demo import Demo, DemoSize
from tunelytics.domain.predict.popularity import DailyPlays, PopularityModel, PopularityParameters
from tunelytics.seeding import seed_demo
from tunelytics.storage import Storage

POPULARITY = """query($id: ID!) { trackPopularity(trackId: $id) {
  trackId predictedPlays7d lastPlays7d growth } }"""
RISING = """query($first: Int) { risingTracks(first: $first) {
  track { id title } predictedPlays7d lastPlays7d growth } }"""
# 56 days: the newest week is the hold-out, the weeks before it tune the parameters.
SIZE = DemoSize(artists=6, tracks=40, listeners=20, listens=2_000, days=56)
BOOST = 200  # enough to top even a conservatively tuned model (a smooth level)


def yesterday() -> datetime:
    return datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)


def last_day(demo: Demo) -> datetime:
    """The server's newest day: yesterday, or the newest day with a listen if earlier."""
    newest = max(li.played_at for li in demo.listens).replace(hour=0, minute=0, second=0)
    return min(yesterday(), newest.replace(microsecond=0))


def last_week(demo: Demo, end: datetime | None = None) -> Counter[str]:
    since = (end or last_day(demo)) - timedelta(days=6)
    return Counter(li.track_id for li in demo.listens if li.played_at >= since)


async def trained(api: Api, tenant: str) -> PopularityParameters:
    """Train and activate the tenant's popularity model; the parameters it learned."""
    await train(api, token(tenant, Role.ANALYST), "POPULARITY")
    (model,) = (await versions(api, token(tenant, Role.VIEWER), "POPULARITY")).values()
    assert model["status"] == "ACTIVE"
    m = metrics(model)
    assert m["validation_weeks"] >= 1 and m["holdout_tracks"] > 0
    assert m["mae"] >= 0 and m["mae_naive"] >= 0
    return PopularityParameters(
        **{k: model["params"][k] for k in ("alpha", "damping", "prior_plays")}
    )


def expected_rising(demo: Demo, params: PopularityParameters) -> list[str]:
    """The domain model on the seeded listens: what the database's counts must give."""
    plays = Counter((li.track_id, li.played_at.date()) for li in demo.listens)
    (scores,) = PopularityModel(params).score([DailyPlays(plays, datetime.now(UTC).date())])
    return [s.track_id for s in scores.rising]


async def seeded(storage: Storage, seed: int, size: DemoSize = SIZE) -> tuple[str, Demo]:
    slug = f"t-{uuid.uuid4().hex[:10]}"
    return slug, await seed_demo(storage, slug, name=slug, size=size, seed=seed)


async def test_a_boosted_track_rises_in_its_tenant_only(api: Api, storage: Storage) -> None:
    a, demo_a = await seeded(storage, seed=5)
    b, demo_b = await seeded(storage, seed=6)  # the same track IDs, other listens
    assert [t.id for t in demo_a.tracks] == [t.id for t in demo_b.tracks]
    body = await api.post(RISING, {"first": 5}, token(a, Role.VIEWER))
    assert codes(body) == ["MODEL_NOT_READY"], body
    assert "trainModel(kind: POPULARITY)" in body["errors"][0]["message"]
    await trained(api, a)
    params_b = await trained(api, b)
    # Scored (and cached) before the boost: new listens must make the next read fresh.
    first = await api.post(RISING, {"first": 100}, token(a, Role.VIEWER))
    assert "errors" not in first, first
    before = last_week(demo_a, yesterday())  # the boost makes yesterday the newest day
    quiet = min(demo_a.tracks, key=lambda t: (before[t.id], t.id)).id
    listener = demo_a.listeners[0].id
    boost = [
        {"listenerId": listener, "trackId": quiet, "msPlayed": 120_000,
         "playedAt": (yesterday() - timedelta(days=i % 6) + timedelta(hours=12)).isoformat()}
        for i in range(BOOST)
    ]  # fmt: skip
    await record_listens(api, token(a, Role.INGEST), boost)

    body = await api.post(RISING, {"first": 100}, token(a, Role.VIEWER))
    assert "errors" not in body, body
    rising_a = body["data"]["risingTracks"]
    assert rising_a[0]["track"]["id"] == quiet, rising_a[:3]
    assert quiet not in {r["track"]["id"] for r in first["data"]["risingTracks"]}
    assert rising_a[0]["lastPlays7d"] == before[quiet] + BOOST
    assert rising_a[0]["growth"] >= 1.25 and rising_a[0]["predictedPlays7d"] > 0
    growths = [r["growth"] for r in rising_a]
    assert growths == sorted(growths, reverse=True)

    body = await api.post(RISING, {"first": 100}, token(b, Role.VIEWER))
    assert "errors" not in body, body
    rising_b = [r["track"]["id"] for r in body["data"]["risingTracks"]]
    # B's own listens and parameters, none of A's boost.
    assert rising_b == expected_rising(demo_b, params_b)[:100]
    titles_b = {t.id: t.title for t in demo_b.tracks}
    assert all(
        r["track"]["title"] == titles_b[r["track"]["id"]] for r in body["data"]["risingTracks"]
    )

    # One track ID, each tenant's own counts.
    mine = await api.post(POPULARITY, {"id": quiet}, token(a, Role.VIEWER))
    theirs = await api.post(POPULARITY, {"id": quiet}, token(b, Role.VIEWER))
    assert mine["data"]["trackPopularity"]["lastPlays7d"] == before[quiet] + BOOST
    assert theirs["data"]["trackPopularity"]["lastPlays7d"] == last_week(demo_b)[quiet]


async def test_every_track_counts_exactly_and_refusals_are_clear(
    api: Api, storage: Storage
) -> None:
    a, demo = await seeded(storage, seed=8)
    viewer = token(a, Role.VIEWER)
    await trained(api, a)
    week = last_week(demo)
    for track in demo.tracks[:10]:
        body = await api.post(POPULARITY, {"id": track.id}, viewer)
        assert "errors" not in body, body
        got = body["data"]["trackPopularity"]
        assert got["trackId"] == track.id and got["lastPlays7d"] == week[track.id]
        assert got["predictedPlays7d"] >= 0
    assert codes(await api.post(POPULARITY, {"id": "no-such"}, viewer)) == ["NOT_FOUND"]
    for first in (0, 101):
        assert codes(await api.post(RISING, {"first": first}, viewer)) == ["BAD_USER_INPUT"]
    assert codes(await api.post(RISING, {}, token(a, Role.INGEST))) == ["FORBIDDEN"]
    assert codes(await api.post(RISING, {}, "not-a-token")) == ["UNAUTHENTICATED"]

    # 20 days of listens cannot support 28-day windows: training says so, and the
    # tenant's queries say why there is no model; no number made up.
    short, demo_short = await seeded(storage, seed=9, size=SMALL)
    analyst = token(short, Role.ANALYST)
    job = await finished(api, analyst, await start(api, analyst, "POPULARITY"))
    assert job["status"] == "FAILED" and "not enough data" in job["error"], job
    body = await api.post(POPULARITY, {"id": demo_short.tracks[0].id}, token(short, Role.VIEWER))
    assert codes(body) == ["MODEL_NOT_READY"] and "failed to train" in body["errors"][0]["message"]
