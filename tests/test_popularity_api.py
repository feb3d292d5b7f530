"""Track popularity through the real server: counts from the database, rising tracks,
refusals, and tenancy with the same track IDs in two tenants."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

from tests.conftest import SMALL
from tests.helpers import Api, codes, record_listens, token
from tunelytics.domain.auth import Role
from tunelytics.domain.demo import Demo, DemoSize
from tunelytics.domain.predict.popularity import daily_matrix, predict_popularity, rising_tracks
from tunelytics.seeding import seed_demo
from tunelytics.storage import Storage

POPULARITY = """query($id: ID!) { trackPopularity(trackId: $id) {
  trackId predictedPlays7d lastPlays7d growth } }"""
RISING = """query($first: Int) { risingTracks(first: $first) {
  track { id title } predictedPlays7d lastPlays7d growth } }"""
SIZE = DemoSize(artists=6, tracks=40, listeners=20, listens=1_500, days=42)
BOOST = 60


def yesterday() -> datetime:
    return datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)


def last_day(demo: Demo) -> datetime:
    """The server's newest day: yesterday, or the newest day with a listen if earlier."""
    newest = max(li.played_at for li in demo.listens).replace(hour=0, minute=0, second=0)
    return min(yesterday(), newest.replace(microsecond=0))


def last_week(demo: Demo, end: datetime | None = None) -> Counter[str]:
    since = (end or last_day(demo)) - timedelta(days=6)
    return Counter(li.track_id for li in demo.listens if li.played_at >= since)


def expected_rising(demo: Demo) -> list[str]:
    """The domain model on the seeded listens: what the database's counts must give."""
    plays = Counter((li.track_id, li.played_at.date()) for li in demo.listens)
    ids = sorted({t for t, _ in plays})
    p = predict_popularity(daily_matrix(plays, ids, last_day(demo).date(), 56))
    return [ids[i] for i in rising_tracks(p, ids)]


async def seeded(storage: Storage, seed: int, size: DemoSize = SIZE) -> tuple[str, Demo]:
    slug = f"t-{uuid.uuid4().hex[:10]}"
    return slug, await seed_demo(storage, slug, name=slug, size=size, seed=seed)


async def test_a_boosted_track_rises_in_its_tenant_only(api: Api, storage: Storage) -> None:
    a, demo_a = await seeded(storage, seed=5)
    b, demo_b = await seeded(storage, seed=6)  # the same track IDs, other listens
    assert [t.id for t in demo_a.tracks] == [t.id for t in demo_b.tracks]
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
    assert rising_a[0]["track"]["id"] == quiet
    assert rising_a[0]["lastPlays7d"] == before[quiet] + BOOST
    assert rising_a[0]["growth"] >= 1.25 and rising_a[0]["predictedPlays7d"] > 0
    growths = [r["growth"] for r in rising_a]
    assert growths == sorted(growths, reverse=True)

    body = await api.post(RISING, {"first": 100}, token(b, Role.VIEWER))
    assert "errors" not in body, body
    rising_b = [r["track"]["id"] for r in body["data"]["risingTracks"]]
    assert rising_b == expected_rising(demo_b)[:100]  # B's own listens, none of A's boost
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

    # 20 days of listens cannot support 28-day windows: said so, no number made up.
    short, demo_short = await seeded(storage, seed=9, size=SMALL)
    body = await api.post(POPULARITY, {"id": demo_short.tracks[0].id}, token(short, Role.VIEWER))
    assert codes(body) == ["BAD_USER_INPUT"]
    assert body["errors"][0]["extensions"]["reason"] == "NOT_ENOUGH_DATA"
