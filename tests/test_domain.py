"""Pure-logic units: validation rules, batches, cursors, roles, the demo generator."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest

from tunelytics.domain.auth import Permission, Principal, Role
from tunelytics.domain.batches import sort_out
from tunelytics.domain.catalog import Track, new_track
from tunelytics.domain.demo import DemoSize, generate_demo
from tunelytics.domain.errors import InvalidItem
from tunelytics.domain.listening import new_listen
from tunelytics.resolvers.errors import BadUserInput
from tunelytics.resolvers.pagination import decode_cursor, encode_cursor

NOW = datetime(2026, 11, 22, 12, tzinfo=UTC)
TRACK = Track(id="tr-1", title="T", artist_id="ar-1", duration_ms=200_000)


def test_roles_grant_what_the_design_says() -> None:
    def principal(*roles: Role) -> Principal:
        return Principal("s", "acme", frozenset(roles))

    assert principal(Role.VIEWER).can(Permission.READ)
    assert not principal(Role.VIEWER).can(Permission.WRITE_LISTENS)
    assert principal(Role.ANALYST).can(Permission.TRAIN)
    assert not principal(Role.ANALYST).can(Permission.WRITE_CATALOG)
    assert principal(Role.INGEST).can(Permission.WRITE_METRICS)
    assert not principal(Role.INGEST).can(Permission.READ)
    assert all(principal(Role.ADMIN).can(p) for p in Permission)
    assert principal(Role.VIEWER, Role.INGEST).can(Permission.READ)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"title": "  "}, "title"),
        ({"title": "x" * 301}, "title"),
        ({"duration_ms": 0}, "durationMs"),
        ({"duration_ms": 7 * 3600 * 1000}, "durationMs"),
        ({"id": "-bad"}, "id"),
        ({"id": "a" * 129}, "id"),
        ({"artist_id": "has space"}, "artistId"),
        ({"genres": ["ok"] * 11}, "genres"),
        ({"genres": [""]}, "genres"),
    ],
)
def test_track_rules(kwargs: dict, field: str) -> None:
    base = {"id": "tr-1", "title": "Song", "artist_id": "ar-1", "duration_ms": 1000}
    with pytest.raises(InvalidItem) as error:
        new_track(**{**base, **kwargs})
    assert error.value.field == field


def test_genres_are_normalised() -> None:
    track = new_track("tr-1", " Song ", "ar-1", 1000, ["Pop", "pop ", "Indie"])
    assert (track.title, track.genres) == ("Song", ["pop", "indie"])


def test_listen_rules_and_skip_default() -> None:
    def listen(**kwargs: object) -> object:
        args = {
            "listener_id": "li-1",
            "track": TRACK,
            "played_at": NOW,
            "ms_played": 100_000,
            "skipped": None,
            "source": "album",
            "now": NOW,
            **kwargs,
        }
        return new_listen(**args)  # type: ignore[arg-type]

    assert listen(ms_played=29_000).skipped is True
    assert listen(ms_played=31_000).skipped is False
    assert listen(ms_played=29_000, skipped=False).skipped is False
    # A whole short track is not a skip.
    short = Track(id="tr-2", title="Intro", artist_id="ar-1", duration_ms=20_000)
    assert listen(track=short, ms_played=20_000).skipped is False
    # Naive datetimes are UTC.
    assert listen(played_at=datetime(2026, 11, 22, 11)).played_at.tzinfo == UTC
    for kwargs, field in [
        ({"played_at": NOW + timedelta(minutes=6)}, "playedAt"),
        ({"played_at": NOW - timedelta(days=366)}, "playedAt"),
        ({"ms_played": -1}, "msPlayed"),
        ({"ms_played": 202_000}, "msPlayed"),
        ({"source": "telepathy"}, "source"),
    ]:
        with pytest.raises(InvalidItem) as error:
            listen(**kwargs)
        assert error.value.field == field


def test_sort_out_keeps_valid_items_and_reports_each_invalid_one() -> None:
    def build(value: int) -> str:
        if value < 0:
            raise InvalidItem("value", "negative")
        return f"k{value}"

    accepted, rejected = sort_out([1, -1, 2, 1, -5], build, key=lambda k: k)
    assert accepted == [(0, "k1"), (2, "k2")]
    assert [(r.index, r.field) for r in rejected] == [(1, "value"), (3, "id"), (4, "value")]


def test_cursor_round_trip_and_tampering() -> None:
    played = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    for order, position in [
        ("TITLE", ("Blue Moon", "tr-9")),
        ("DURATION", (1234, "tr-1")),
        ("PLAYED_AT", (played, "65a0f0f0f0f0f0f0f0f0f0f0")),
    ]:
        assert decode_cursor(encode_cursor(order, position), order) == position
    assert decode_cursor(None, "TITLE") is None
    with pytest.raises(BadUserInput):
        decode_cursor(encode_cursor("TITLE", ("a", "b")), "DURATION")
    for bad in ("", "!!!", "WzEsMl0", "bnVsbA"):
        with pytest.raises(BadUserInput):
            decode_cursor(bad, "TITLE")


def test_demo_is_deterministic_and_realistic() -> None:
    end = datetime(2026, 11, 1, tzinfo=UTC)
    size = DemoSize(artists=50, tracks=800, listeners=200, listens=30_000, days=28)
    demo = generate_demo(size, seed=11, end=end)
    again = generate_demo(size, seed=11, end=end)
    assert demo.tracks == again.tracks and demo.listens == again.listens
    assert generate_demo(size, seed=12, end=end).listens != demo.listens

    assert (len(demo.artists), len(demo.tracks), len(demo.listeners), len(demo.listens)) == (
        50,
        800,
        200,
        30_000,
    )
    assert all(demo.start <= listen.played_at < end for listen in demo.listens)
    signup = {li.id: li.signup_at for li in demo.listeners}
    assert all(listen.played_at >= signup[listen.listener_id] for listen in demo.listens)

    # Long tail: the top 10% of tracks take far more than 10% of plays.
    plays = sorted((t.listen_count for t in demo.tracks), reverse=True)
    assert sum(plays[:80]) > 0.4 * sum(plays)
    assert sum(plays) == len(demo.listens)
    # Daily rhythm: the evening is busier than the small hours.
    hours = Counter(listen.played_at.hour for listen in demo.listens)
    assert hours[20] > 4 * hours[4]
    # Weekly rhythm: weekends are busier than the start of the week.
    days = Counter(listen.played_at.weekday() for listen in demo.listens)
    assert days[5] > days[0]
    skip_rate = sum(listen.skipped for listen in demo.listens) / len(demo.listens)
    assert 0.1 < skip_rate < 0.4
    assert all(0 < listen.ms_played <= 720_000 for listen in demo.listens)
    # Sessions: most listens follow another listen by the same listener within minutes.
    by_listener: dict[str, list[datetime]] = {}
    for listen in sorted(demo.listens, key=lambda x: x.played_at):
        by_listener.setdefault(listen.listener_id, []).append(listen.played_at)
    gaps = [b - a for times in by_listener.values() for a, b in pairwise(times)]
    assert sum(gap < timedelta(minutes=15) for gap in gaps) > 0.6 * len(gaps)
