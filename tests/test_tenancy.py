"""Tenancy is absolute: tenant A, attacking with everything it holds, never reaches tenant B.

`tenant` (A) and `other_tenant` (B) are seeded from different seeds, so they share every
ID (tr-00001, ar-0001, li-00001, ...) but no content. Every answer A gets is compared with
A's own demo data; B is read back with B's token and, at the end, byte for byte in MongoDB.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from bson import ObjectId
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument

from tests.conftest import SeededTenant
from tests.helpers import Api, codes, token
from tunelytics.domain.demo import Demo
from tunelytics.resolvers.pagination import decode_cursor
from tunelytics.storage import Storage
from tunelytics.storage.listening import listen_sequence

TRACK_FIELDS = "id title durationMs genres listenCount artist { id name }"
TRACKS = f"""
query Tracks($first: Int!, $after: String, $order: TrackOrderBy!, $filter: TrackFilter) {{
  tracks(first: $first, after: $after, orderBy: $order, filter: $filter) {{
    totalCount
    edges {{ cursor node {{ {TRACK_FIELDS} }} }}
    pageInfo {{ hasNextPage endCursor }}
  }}
}}
"""
ARTISTS = """
query Artists($first: Int!, $after: String, $genre: String) {
  artists(first: $first, after: $after, genre: $genre) {
    edges { node { id name genres country } }
    pageInfo { hasNextPage endCursor }
  }
}
"""
LISTENS = """
query Listens($id: ID!, $first: Int!, $after: String) {
  listener(id: $id) {
    id country plan
    listens(first: $first, after: $after) {
      edges { node { id playedAt msPlayed skipped source trackId listenerId
        track { id title durationMs } listener { id country plan } } }
      pageInfo { hasNextPage endCursor }
    }
  }
}
"""
UPSERT_ARTISTS = """mutation($items: [ArtistInput!]!) { upsertArtists(artists: $items) {
  artists { id name } rejected { index field code message } } }"""
UPSERT_TRACKS = """mutation($items: [TrackInput!]!) { upsertTracks(tracks: $items) {
  tracks { id title listenCount } rejected { index field code message } } }"""
UPSERT_LISTENERS = """mutation($items: [ListenerInput!]!) { upsertListeners(listeners: $items) {
  listeners { id country plan } rejected { index field code message } } }"""
RECORD_LISTENS = """mutation($items: [ListenInput!]!) { recordListens(listens: $items) {
  listens { id trackId listenerId } rejected { index field code message } } }"""
ORDER_KEYS = {
    "TITLE": lambda t: (t.title, t.id),
    "DURATION": lambda t: (t.duration_ms, t.id),
    "POPULARITY": lambda t: (-t.listen_count, t.id),
    "ID": lambda t: t.id,
}
NODE_KEYS = {
    "TITLE": lambda n: (n["title"], n["id"]),
    "DURATION": lambda n: (n["durationMs"], n["id"]),
    "POPULARITY": lambda n: (-n["listenCount"], n["id"]),
    "ID": lambda n: n["id"],
}


# What A's (or B's) own demo data says each object must look like.


def expected_track(demo: Demo, track_id: str) -> dict[str, Any]:
    track = next(t for t in demo.tracks if t.id == track_id)
    artist = next(a for a in demo.artists if a.id == track.artist_id)
    return {
        "id": track.id,
        "title": track.title,
        "durationMs": track.duration_ms,
        "genres": track.genres,
        "listenCount": track.listen_count,
        "artist": {"id": artist.id, "name": artist.name},
    }


def expected_artist(demo: Demo, artist_id: str) -> dict[str, Any]:
    artist = next(a for a in demo.artists if a.id == artist_id)
    return {
        "id": artist.id,
        "name": artist.name,
        "genres": artist.genres,
        "country": artist.country,
    }


def expected_listener(demo: Demo, listener_id: str) -> dict[str, Any]:
    listener = next(li for li in demo.listeners if li.id == listener_id)
    return {"id": listener.id, "country": listener.country, "plan": listener.plan}


def listen_signatures(demo: Demo, listener_id: str) -> Counter[tuple[str, int, bool, str]]:
    return Counter(
        (li.track_id, li.ms_played, li.skipped, li.source)
        for li in demo.listens
        if li.listener_id == listener_id
    )


def busiest_listener(demo: Demo) -> str:
    return Counter(li.listener_id for li in demo.listens).most_common(1)[0][0]


# Reads through the API.


async def walk_tracks(
    api: Api, tok: str, order: str, filter: dict | None = None, first: int = 9
) -> list[dict]:
    nodes: list[dict] = []
    after = None
    while True:
        data = await api.data(
            TRACKS, {"first": first, "after": after, "order": order, "filter": filter}, tok
        )
        nodes += [edge["node"] for edge in data["tracks"]["edges"]]
        if not data["tracks"]["pageInfo"]["hasNextPage"]:
            return nodes
        after = data["tracks"]["pageInfo"]["endCursor"]


async def walk_listens(api: Api, tok: str, listener_id: str, after: str | None = None) -> list:
    nodes: list[dict] = []
    while True:
        data = await api.data(LISTENS, {"id": listener_id, "first": 100, "after": after}, tok)
        page = data["listener"]["listens"]
        nodes += [edge["node"] for edge in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            return nodes
        after = page["pageInfo"]["endCursor"]


async def read_track(api: Api, tok: str, track_id: str) -> dict[str, Any]:
    data = await api.data(
        f"query($id: ID!) {{ track(id: $id) {{ {TRACK_FIELDS} }} }}", {"id": track_id}, tok
    )
    return data["track"]


async def read_artist(api: Api, tok: str, artist_id: str) -> dict[str, Any]:
    query = "query($id: ID!) { artist(id: $id) { id name genres country } }"
    return (await api.data(query, {"id": artist_id}, tok))["artist"]


async def read_listener(api: Api, tok: str, listener_id: str) -> dict[str, Any]:
    query = "query($id: ID!) { listener(id: $id) { id country plan } }"
    return (await api.data(query, {"id": listener_id}, tok))["listener"]


async def mutate(api: Api, tok: str, mutation: str, items: list[dict]) -> dict[str, Any]:
    data = await api.data(mutation, {"items": items}, tok)
    (payload,) = data.values()
    return payload


def in_the_past(hours: int = 1) -> str:
    return (datetime.now(UTC) - timedelta(hours=hours)).isoformat()


# Objects that exist in B only.


@dataclass
class OnlyInB:
    artist: str = "only-in-b-artist"
    track: str = "only-in-b"
    listener: str = "only-in-b-listener"
    title: str = "Only In B Anthem"
    genre: str = "b-only-genre"
    listens: int = 2


@pytest.fixture
async def only_in_b(api: Api, other_tenant: SeededTenant) -> OnlyInB:
    b = OnlyInB()
    admin = other_tenant.admin
    artists = [{"id": b.artist, "name": "B Only Artist", "genres": [b.genre]}]
    assert (await mutate(api, admin, UPSERT_ARTISTS, artists))["rejected"] == []
    tracks = [{"id": b.track, "title": b.title, "artistId": b.artist, "durationMs": 200_000}]
    assert (await mutate(api, admin, UPSERT_TRACKS, tracks))["rejected"] == []
    listeners = [{"id": b.listener, "country": "SE", "plan": "premium"}]
    assert (await mutate(api, admin, UPSERT_LISTENERS, listeners))["rejected"] == []
    listens = [
        {
            "listenerId": b.listener,
            "trackId": b.track,
            "msPlayed": 120_000,
            "playedAt": in_the_past(h),
        }
        for h in range(1, b.listens + 1)
    ]
    assert (await mutate(api, admin, RECORD_LISTENS, listens))["rejected"] == []
    return b


def test_the_two_tenants_share_ids_but_not_content(
    tenant: SeededTenant, other_tenant: SeededTenant
) -> None:
    """The premise of every test here: equal IDs, different content."""
    a, b = tenant.demo, other_tenant.demo
    assert tenant.id != other_tenant.id
    assert [t.id for t in a.tracks] == [t.id for t in b.tracks]
    assert [x.id for x in a.artists] == [x.id for x in b.artists]
    assert [x.id for x in a.listeners] == [x.id for x in b.listeners]
    assert all(x.title != y.title for x, y in zip(a.tracks, b.tracks, strict=True))
    assert all(x.duration_ms != y.duration_ms for x, y in zip(a.tracks, b.tracks, strict=True))
    assert any(x.name != y.name for x, y in zip(a.artists, b.artists, strict=True))


# Every Query field, with A's token, answers with A's data only.


async def test_viewer_and_tenant_are_the_callers(
    api: Api, tenant: SeededTenant, other_tenant: SeededTenant
) -> None:
    data = await api.data(
        "{ viewer { tenantId tenant { id name } } tenant { id name } }", token=tenant.viewer
    )
    assert data["viewer"] == {
        "tenantId": tenant.id,
        "tenant": {"id": tenant.id, "name": f"Tenant {tenant.id}"},
    }
    assert data["tenant"] == {"id": tenant.id, "name": f"Tenant {tenant.id}"}


async def test_single_lookups_and_nested_fields_are_a(
    api: Api, tenant: SeededTenant, other_tenant: SeededTenant, only_in_b: OnlyInB
) -> None:
    a, b = tenant.demo, other_tenant.demo
    for track in a.tracks:
        got = await read_track(api, tenant.viewer, track.id)
        assert got == expected_track(a, track.id)
        assert got != expected_track(b, track.id)
    query = """query($id: ID!) { artist(id: $id) { id name genres country
        tracks(first: 100) { id title durationMs artist { id name } } } }"""
    for artist in a.artists:
        got = (await api.data(query, {"id": artist.id}, tenant.viewer))["artist"]
        tracks = got.pop("tracks")
        assert got == expected_artist(a, artist.id)
        own = {t.id: t for t in a.tracks if t.artist_id == artist.id}
        assert {t["id"] for t in tracks} == set(own)
        for node in tracks:
            assert node["title"] == own[node["id"]].title
            assert node["durationMs"] == own[node["id"]].duration_ms
            assert node["artist"] == {"id": artist.id, "name": artist.name}
    for listener in a.listeners:
        assert await read_listener(api, tenant.viewer, listener.id) == expected_listener(
            a, listener.id
        )


async def test_track_lists_in_every_order_are_a(
    api: Api, tenant: SeededTenant, other_tenant: SeededTenant, only_in_b: OnlyInB
) -> None:
    a = tenant.demo
    for order in ORDER_KEYS:
        nodes = await walk_tracks(api, tenant.viewer, order)
        assert [n["id"] for n in nodes] == [t.id for t in sorted(a.tracks, key=ORDER_KEYS[order])]
        assert nodes == [expected_track(a, n["id"]) for n in nodes], order
    data = await api.data(TRACKS, {"first": 1, "order": "ID"}, tenant.viewer)
    assert data["tracks"]["totalCount"] == len(a.tracks)


async def test_track_filters_match_a_only(
    api: Api, tenant: SeededTenant, other_tenant: SeededTenant, only_in_b: OnlyInB
) -> None:
    a, b = tenant.demo, other_tenant.demo

    async def check(filter: dict, expected: set[str]) -> None:
        for order in ORDER_KEYS:
            nodes = await walk_tracks(api, tenant.viewer, order, filter)
            assert {n["id"] for n in nodes} == expected, (filter, order)
            assert nodes == [expected_track(a, n["id"]) for n in nodes], (filter, order)
        data = await api.data(TRACKS, {"first": 1, "order": "ID", "filter": filter}, tenant.viewer)
        assert data["tracks"]["totalCount"] == len(expected), filter

    # Genres, title words and durations that only B's catalogue has find nothing in A.
    b_genres = {g for t in b.tracks for g in t.genres} - {g for t in a.tracks for g in t.genres}
    b_words = {w for t in b.tracks for w in t.title.split()} - {
        w for t in a.tracks for w in t.title.split()
    }
    assert b_genres and b_words, "the seeds are expected to differ in genres and words"
    for genre in [*sorted(b_genres), only_in_b.genre]:
        await check({"genre": genre}, set())
    for word in [*sorted(b_words), "Only In B"]:
        await check({"titleContains": word}, set())
    await check({"artistId": only_in_b.artist}, set())
    b_duration = b.tracks[0].duration_ms
    await check({"minDurationMs": b_duration, "maxDurationMs": b_duration}, set())

    # Filters that match in both tenants match A's tracks only.
    for genre in sorted({g for t in a.tracks for g in t.genres}):
        await check({"genre": genre}, {t.id for t in a.tracks if genre in t.genres})
    word = a.tracks[0].title.split()[0]
    await check(
        {"titleContains": word}, {t.id for t in a.tracks if word.lower() in t.title.lower()}
    )
    for artist in a.artists[:3]:
        await check({"artistId": artist.id}, {t.id for t in a.tracks if t.artist_id == artist.id})
    lo, hi = 180_000, 240_000
    await check(
        {"minDurationMs": lo, "maxDurationMs": hi},
        {t.id for t in a.tracks if lo <= t.duration_ms <= hi},
    )
    genre = a.tracks[0].genres[0]
    await check(
        {"genre": genre, "minDurationMs": lo},
        {t.id for t in a.tracks if genre in t.genres and t.duration_ms >= lo},
    )


async def test_artist_lists_are_a(
    api: Api, tenant: SeededTenant, other_tenant: SeededTenant, only_in_b: OnlyInB
) -> None:
    a, b = tenant.demo, other_tenant.demo
    nodes: list[dict] = []
    after = None
    while True:
        data = await api.data(ARTISTS, {"first": 4, "after": after}, tenant.viewer)
        nodes += [e["node"] for e in data["artists"]["edges"]]
        if not data["artists"]["pageInfo"]["hasNextPage"]:
            break
        after = data["artists"]["pageInfo"]["endCursor"]
    ordered = sorted(a.artists, key=lambda x: (x.name, x.id))
    assert nodes == [expected_artist(a, x.id) for x in ordered]

    for genre in sorted({g for x in a.artists + b.artists for g in x.genres} | {only_in_b.genre}):
        data = await api.data(ARTISTS, {"first": 100, "genre": genre}, tenant.viewer)
        got = [e["node"] for e in data["artists"]["edges"]]
        assert got == [expected_artist(a, x.id) for x in ordered if genre in x.genres], genre


async def test_listener_listens_and_their_nested_objects_are_a(
    api: Api, tenant: SeededTenant, other_tenant: SeededTenant, only_in_b: OnlyInB
) -> None:
    a, b = tenant.demo, other_tenant.demo
    for listener_id in {busiest_listener(a), busiest_listener(b), "li-00001"}:
        nodes = await walk_listens(api, tenant.viewer, listener_id)
        assert Counter(
            (n["trackId"], n["msPlayed"], n["skipped"], n["source"]) for n in nodes
        ) == listen_signatures(a, listener_id)
        for node in nodes:
            assert node["listenerId"] == listener_id
            assert node["listener"] == expected_listener(a, listener_id)
            own = expected_track(a, node["trackId"])
            assert node["track"] == {
                "id": own["id"],
                "title": own["title"],
                "durationMs": own["durationMs"],
            }


async def test_ids_that_exist_only_in_b_are_not_found_for_a(
    api: Api, tenant: SeededTenant, other_tenant: SeededTenant, only_in_b: OnlyInB
) -> None:
    # B itself sees them, so the lookups below would find them if the tenant were ignored.
    assert (await read_track(api, other_tenant.viewer, only_in_b.track))["title"] == only_in_b.title
    lookups = {
        "track": [only_in_b.track],
        "artist": [only_in_b.artist],
        "listener": [only_in_b.listener],
    }
    # IDs crafted to resemble B's storage keys ("<tenant>/<id>") find nothing either.
    crafted = [
        f"{other_tenant.id}/tr-00001",
        f"../{other_tenant.id}/tr-00001",
        f"{tenant.id}/../{other_tenant.id}/tr-00001",
        "tr-00001\n",
        "",
    ]
    for field, ids in lookups.items():
        for item_id in ids + crafted:
            body = await api.post(
                f"query($id: ID!) {{ {field}(id: $id) {{ id }} }}", {"id": item_id}, tenant.viewer
            )
            assert body["data"] == {field: None}, (field, item_id)
            assert codes(body) == ["NOT_FOUND"], (field, item_id)
    # B's only listener has listens in B; as seen by A that listener does not exist at all.
    body = await api.post(LISTENS, {"id": only_in_b.listener, "first": 10}, tenant.viewer)
    assert body["data"] == {"listener": None}
    assert codes(body) == ["NOT_FOUND"]


# Cursors carry a position, never a tenant: B's cursors, replayed by A, walk A's data.


async def test_cursors_from_b_replayed_by_a_yield_a_items(
    api: Api, tenant: SeededTenant, other_tenant: SeededTenant, only_in_b: OnlyInB
) -> None:
    a = tenant.demo
    for order in ORDER_KEYS:
        data = await api.data(TRACKS, {"first": 5, "order": order}, other_tenant.viewer)
        b_nodes = [e["node"] for e in data["tracks"]["edges"]]
        cursor = data["tracks"]["pageInfo"]["endCursor"]
        position = NODE_KEYS[order](b_nodes[-1])
        replay = await api.data(
            TRACKS, {"first": 100, "order": order, "after": cursor}, tenant.viewer
        )
        nodes = [e["node"] for e in replay["tracks"]["edges"]]
        expected = [
            t.id for t in sorted(a.tracks, key=ORDER_KEYS[order]) if ORDER_KEYS[order](t) > position
        ]
        assert [n["id"] for n in nodes] == expected, order
        assert nodes == [expected_track(a, n["id"]) for n in nodes], order
        assert {n["id"] for n in nodes}.isdisjoint({only_in_b.track})

    data = await api.data(ARTISTS, {"first": 2}, other_tenant.viewer)
    last = data["artists"]["edges"][-1]["node"]
    replay = await api.data(
        ARTISTS,
        {"first": 100, "after": data["artists"]["pageInfo"]["endCursor"]},
        tenant.viewer,
    )
    assert [e["node"] for e in replay["artists"]["edges"]] == [
        expected_artist(a, x.id)
        for x in sorted(a.artists, key=lambda x: (x.name, x.id))
        if (x.name, x.id) > (last["name"], last["id"])
    ]

    listener_id = busiest_listener(other_tenant.demo)
    data = await api.data(LISTENS, {"id": listener_id, "first": 10}, other_tenant.viewer)
    cursor = data["listener"]["listens"]["pageInfo"]["endCursor"]
    sequence, _ = decode_cursor(cursor, "PLAYED_AT")
    assert sequence is not None
    own = await walk_listens(api, tenant.viewer, listener_id)
    replayed = await walk_listens(api, tenant.viewer, listener_id, after=cursor)
    assert [n["id"] for n in replayed] == [
        n["id"]
        for n in own
        if listen_sequence(datetime.fromisoformat(n["playedAt"]), ObjectId(n["id"])) < sequence
    ]
    assert {n["id"] for n in own}.isdisjoint(
        {n["id"] for n in await walk_listens(api, other_tenant.viewer, listener_id)}
    )
    signatures = listen_signatures(a, listener_id)
    for node in replayed:
        assert signatures[(node["trackId"], node["msPlayed"], node["skipped"], node["source"])]
        assert node["listener"] == expected_listener(a, listener_id)


# Writes with A's token change A's documents only.


async def test_upserts_with_shared_ids_change_only_a(
    api: Api, tenant: SeededTenant, other_tenant: SeededTenant
) -> None:
    a, b = tenant.demo, other_tenant.demo
    track = a.tracks[0]
    result = await mutate(
        api,
        tenant.admin,
        UPSERT_TRACKS,
        [{"id": track.id, "title": "Renamed By A", "artistId": "ar-0002", "durationMs": 123_456}],
    )
    assert result == {
        "tracks": [{"id": track.id, "title": "Renamed By A", "listenCount": track.listen_count}],
        "rejected": [],
    }
    result = await mutate(
        api, tenant.admin, UPSERT_ARTISTS, [{"id": "ar-0001", "name": "A Renamed", "country": "SE"}]
    )
    assert result == {"artists": [{"id": "ar-0001", "name": "A Renamed"}], "rejected": []}
    result = await mutate(
        api,
        tenant.admin,
        UPSERT_LISTENERS,
        [{"id": "li-00001", "country": "ZZ", "plan": "student"}],
    )
    assert result == {
        "listeners": [{"id": "li-00001", "country": "ZZ", "plan": "student"}],
        "rejected": [],
    }
    result = await mutate(
        api,
        tenant.admin,
        UPSERT_TRACKS,
        [{"id": "only-in-a", "title": "A Only", "artistId": "ar-0001", "durationMs": 1000}],
    )
    assert result["rejected"] == []

    # A sees its changes.
    assert await read_track(api, tenant.viewer, track.id) == {
        **expected_track(a, track.id),
        "title": "Renamed By A",
        "durationMs": 123_456,
        "genres": [],  # an upsert replaces every field it is given or defaults
        "artist": {"id": "ar-0002", "name": a.artists[1].name},
    }
    assert (await read_artist(api, tenant.viewer, "ar-0001"))["name"] == "A Renamed"
    assert await read_listener(api, tenant.viewer, "li-00001") == {
        "id": "li-00001",
        "country": "ZZ",
        "plan": "student",
    }
    # B, read with B's token, is exactly as seeded.
    for t in b.tracks:
        assert await read_track(api, other_tenant.viewer, t.id) == expected_track(b, t.id)
    for x in b.artists:
        assert await read_artist(api, other_tenant.viewer, x.id) == expected_artist(b, x.id)
    for li in b.listeners:
        assert await read_listener(api, other_tenant.viewer, li.id) == expected_listener(b, li.id)
    body = await api.post('{ track(id: "only-in-a") { id } }', token=other_tenant.viewer)
    assert codes(body) == ["NOT_FOUND"]


async def test_record_listens_cannot_reach_b(
    api: Api, tenant: SeededTenant, other_tenant: SeededTenant, only_in_b: OnlyInB
) -> None:
    a, b = tenant.demo, other_tenant.demo
    shared_listener = busiest_listener(b)
    b_listens_before = await walk_listens(api, other_tenant.viewer, shared_listener)
    result = await mutate(
        api,
        tenant.admin,
        RECORD_LISTENS,
        [
            {"listenerId": only_in_b.listener, "trackId": "tr-00001", "msPlayed": 60_000},
            {"listenerId": shared_listener, "trackId": only_in_b.track, "msPlayed": 60_000},
            {"listenerId": only_in_b.listener, "trackId": only_in_b.track, "msPlayed": 60_000},
            {"listenerId": shared_listener, "trackId": "tr-00001", "msPlayed": 60_000},
        ],
    )
    assert [(r["index"], r["field"], r["code"]) for r in result["rejected"]] == [
        (0, "listenerId", "NOT_FOUND"),
        (1, "trackId", "NOT_FOUND"),
        (2, "listenerId", "NOT_FOUND"),
    ]
    assert only_in_b.listener in result["rejected"][0]["message"]
    assert only_in_b.track in result["rejected"][1]["message"]
    assert [(li["trackId"], li["listenerId"]) for li in result["listens"]] == [
        ("tr-00001", shared_listener)
    ]

    # A counted its own listen.
    a_track = await read_track(api, tenant.viewer, "tr-00001")
    assert a_track["listenCount"] == a.tracks[0].listen_count + 1
    # B counted nothing and stored nothing.
    assert (await read_track(api, other_tenant.viewer, "tr-00001"))["listenCount"] == (
        b.tracks[0].listen_count
    )
    only_track = await read_track(api, other_tenant.viewer, only_in_b.track)
    assert only_track["listenCount"] == only_in_b.listens
    only_listens = await walk_listens(api, other_tenant.viewer, only_in_b.listener)
    assert len(only_listens) == only_in_b.listens
    assert await walk_listens(api, other_tenant.viewer, shared_listener) == b_listens_before


async def test_a_track_cannot_point_to_an_artist_only_in_b(
    api: Api, tenant: SeededTenant, other_tenant: SeededTenant, only_in_b: OnlyInB
) -> None:
    result = await mutate(
        api,
        tenant.admin,
        UPSERT_TRACKS,
        [
            {"id": "a-new", "title": "New", "artistId": only_in_b.artist, "durationMs": 1000},
            {"id": "tr-00002", "title": "Moved", "artistId": only_in_b.artist, "durationMs": 1},
        ],
    )
    assert result["tracks"] == []
    assert [(r["index"], r["field"], r["code"]) for r in result["rejected"]] == [
        (0, "artistId", "NOT_FOUND"),
        (1, "artistId", "NOT_FOUND"),
    ]
    assert all(only_in_b.artist in r["message"] for r in result["rejected"])
    for tok in (tenant.viewer, other_tenant.viewer):
        assert codes(await api.post('{ track(id: "a-new") { id } }', token=tok)) == ["NOT_FOUND"]
    assert await read_track(api, tenant.viewer, "tr-00002") == expected_track(
        tenant.demo, "tr-00002"
    )
    artist = await api.data(
        "query($id: ID!) { artist(id: $id) { tracks(first: 100) { id } } }",
        {"id": only_in_b.artist},
        other_tenant.viewer,
    )
    assert artist["artist"]["tracks"] == [{"id": only_in_b.track}]


# Tokens: the tenant comes from a verified token and nowhere else.


async def test_a_token_claiming_b_with_another_secret_is_unauthenticated(
    api: Api, tenant: SeededTenant, other_tenant: SeededTenant
) -> None:
    forged = jwt.encode(
        {
            "sub": "attacker",
            "tenant": other_tenant.id,
            "roles": ["admin"],
            "exp": datetime.now(UTC) + timedelta(hours=1),
        },
        "a-secret-the-attacker-made-up-0123456789",
        algorithm="HS256",
    )
    body = await api.post(TRACKS, {"first": 5, "order": "ID"}, forged)
    assert body["data"] is None
    assert codes(body) == ["UNAUTHENTICATED"]
    body = await api.post(
        UPSERT_TRACKS,
        {"items": [{"id": "tr-00001", "title": "Pwned", "artistId": "ar-0001", "durationMs": 1}]},
        forged,
    )
    assert body["data"] is None
    assert codes(body) == ["UNAUTHENTICATED"]
    assert await read_track(api, other_tenant.viewer, "tr-00001") == expected_track(
        other_tenant.demo, "tr-00001"
    )


async def test_an_unregistered_tenant_may_not_write_and_sees_nothing(
    api: Api, storage: Storage, tenant: SeededTenant, other_tenant: SeededTenant
) -> None:
    ghost = f"t-ghost-{uuid.uuid4().hex[:8]}"
    tok = token(ghost)  # well signed, admin, but nobody registered the tenant
    data = await api.data("{ viewer { tenantId tenant { id } } }", token=tok)
    assert data == {"viewer": {"tenantId": ghost, "tenant": None}}
    data = await api.data(TRACKS, {"first": 100, "order": "ID"}, tok)
    assert data["tracks"]["edges"] == []
    assert data["tracks"]["totalCount"] == 0
    assert (await api.data(ARTISTS, {"first": 100}, tok))["artists"]["edges"] == []
    body = await api.post("{ tenant { id } }", token=tok)
    assert body["data"] is None  # Tenant! is not nullable
    assert codes(body) == ["NOT_FOUND"]
    for field, item_id in (("track", "tr-00001"), ("artist", "ar-0001"), ("listener", "li-00001")):
        body = await api.post(f'{{ {field}(id: "{item_id}") {{ id }} }}', token=tok)
        assert body["data"] == {field: None}, field
        assert codes(body) == ["NOT_FOUND"], field

    writes = [
        (UPSERT_ARTISTS, [{"id": "ar-0001", "name": "Ghost"}]),
        (UPSERT_TRACKS, [{"id": "tr-00001", "title": "G", "artistId": "ar-0001", "durationMs": 1}]),
        (UPSERT_LISTENERS, [{"id": "li-00001", "country": "SE", "plan": "free"}]),
        (RECORD_LISTENS, [{"listenerId": "li-00001", "trackId": "tr-00001", "msPlayed": 1000}]),
    ]
    for mutation, items in writes:
        body = await api.post(mutation, {"items": items}, tok)
        assert body["data"] is None, mutation
        assert codes(body) == ["FORBIDDEN"], mutation
        assert "not registered" in body["errors"][0]["message"]
    for name in ("tenants", "artists", "tracks", "listeners", "listens"):
        assert await storage.db[name].count_documents({"tenant_id": ghost}) == 0
    assert await storage.tenants.get(ghost) is None
    for t in (tenant, other_tenant):
        assert await read_track(api, t.viewer, "tr-00001") == expected_track(t.demo, "tr-00001")


INTROSPECTION = """{ __schema { types { name kind
  fields { name args { name } } inputFields { name } } } }"""


async def test_the_schema_has_no_tenant_argument_or_input_field(api: Api) -> None:
    data = await api.data(INTROSPECTION)  # introspection needs no token
    arguments: list[str] = []
    input_fields: list[str] = []
    for type_ in data["__schema"]["types"]:
        if type_["name"].startswith("__"):
            continue
        for field in type_["fields"] or []:
            arguments += [f"{type_['name']}.{field['name']}({a['name']})" for a in field["args"]]
        input_fields += [f"{type_['name']}.{f['name']}" for f in type_["inputFields"] or []]
    # The lists are real (so the check below looks at something) ...
    assert "Query.track(id)" in arguments
    assert "Subscription.listens(trackId)" in arguments
    assert "TrackInput.artistId" in input_fields
    # ... and nothing in them can carry a tenant.
    assert [
        name for name in arguments + input_fields if "tenant" in name.split(".")[-1].lower()
    ] == []


async def test_a_tenant_cannot_be_smuggled_in(
    api: Api, tenant: SeededTenant, other_tenant: SeededTenant
) -> None:
    b_id = other_tenant.id
    # An argument the schema does not have is a validation error, not ignored input.
    for argument in ("tenant", "tenantId", "tenant_id"):
        body = await api.post(
            f'{{ tracks(first: 5, {argument}: "{b_id}") {{ totalCount }} }}', token=tenant.viewer
        )
        assert body["data"] is None
        assert codes(body) == ["BAD_USER_INPUT"]
    # So is an input field the type does not have; nothing is stored anywhere.
    for extra in ({"tenantId": b_id}, {"tenant": b_id}, {"tenant_id": b_id}):
        body = await api.post(
            UPSERT_ARTISTS, {"items": [{"id": "smuggled", "name": "S", **extra}]}, tenant.admin
        )
        assert body["data"] is None
        assert codes(body) == ["BAD_USER_INPUT"]
    for tok in (tenant.viewer, other_tenant.viewer):
        assert codes(await api.post('{ artist(id: "smuggled") { id } }', token=tok)) == [
            "NOT_FOUND"
        ]
    # Extra variables and headers naming B change nothing: A still reads A.
    body = await api.client.post(
        api.url,
        json={
            "query": f'query {{ track(id: "tr-00001") {{ {TRACK_FIELDS} }} }}',
            "variables": {"tenant": b_id, "tenantId": b_id},
            "extensions": {"tenant": b_id},
        },
        headers={
            "Authorization": f"Bearer {tenant.viewer}",
            "X-Tenant": b_id,
            "X-Tenant-Id": b_id,
        },
    )
    assert body.json() == {"data": {"track": expected_track(tenant.demo, "tr-00001")}}


# The whole attack, checked where it would show: B's documents in MongoDB.


async def snapshot(storage: Storage, tenant_id: str) -> dict[str, list[bytes]]:
    """Every document of the tenant, as the raw BSON bytes MongoDB returns."""
    raw = CodecOptions(document_class=RawBSONDocument)
    result: dict[str, list[bytes]] = {}
    for name in ("artists", "tracks", "listeners", "listens"):
        collection = storage.db.get_collection(name, codec_options=raw)
        docs = await collection.find({"tenant_id": tenant_id}).sort("_id", 1).to_list()
        result[name] = [doc.raw for doc in docs]
    tenants = storage.db.get_collection("tenants", codec_options=raw)
    result["tenants"] = [doc.raw for doc in await tenants.find({"_id": tenant_id}).to_list()]
    return result


async def test_b_is_byte_for_byte_unchanged_after_a_attacks(
    api: Api,
    storage: Storage,
    tenant: SeededTenant,
    other_tenant: SeededTenant,
    only_in_b: OnlyInB,
) -> None:
    b_before = await snapshot(storage, other_tenant.id)
    a_before = await snapshot(storage, tenant.id)
    assert len(b_before["tracks"]) == len(other_tenant.demo.tracks) + 1
    assert len(b_before["listens"]) == len(other_tenant.demo.listens) + only_in_b.listens
    assert len(b_before["tenants"]) == 1

    # Reads of B's own IDs, before A creates its own objects with the same IDs below.
    for field, item_id in (
        ("track", only_in_b.track),
        ("artist", only_in_b.artist),
        ("listener", only_in_b.listener),
    ):
        body = await api.post(f'{{ {field}(id: "{item_id}") {{ id }} }}', token=tenant.admin)
        assert codes(body) == ["NOT_FOUND"]

    shared_track, shared_artist, shared_listener = "tr-00001", "ar-0001", "li-00001"
    attacks: list[tuple[str, list[dict]]] = [
        (
            UPSERT_ARTISTS,
            [
                {"id": shared_artist, "name": "Overwritten", "genres": ["x"], "country": "ZZ"},
                {"id": only_in_b.artist, "name": "Overwritten"},
            ],
        ),
        (
            UPSERT_TRACKS,
            [
                {"id": shared_track, "title": "Overwritten", "artistId": shared_artist,
                 "durationMs": 1},
                {"id": only_in_b.track, "title": "Overwritten", "artistId": shared_artist,
                 "durationMs": 1},
                {"id": "tr-00003", "title": "X", "artistId": only_in_b.artist, "durationMs": 1},
            ],
        ),
        (
            UPSERT_LISTENERS,
            [
                {"id": shared_listener, "country": "ZZ", "plan": "family"},
                {"id": only_in_b.listener, "country": "ZZ", "plan": "family"},
            ],
        ),
        (
            RECORD_LISTENS,
            [
                {"listenerId": shared_listener, "trackId": shared_track, "msPlayed": 1},
                {"listenerId": only_in_b.listener, "trackId": shared_track, "msPlayed": 1},
                {"listenerId": shared_listener, "trackId": only_in_b.track, "msPlayed": 1},
            ],
        ),
    ]  # fmt: skip
    for mutation, items in attacks:
        body = await api.post(mutation, {"items": items}, tenant.admin)
        assert "errors" not in body, body
    # A's other roles, an unregistered tenant and a forged token for B try the same.
    forged = jwt.encode(
        {
            "tenant": other_tenant.id,
            "roles": ["admin"],
            "exp": datetime.now(UTC) + timedelta(hours=1),
        },
        "not-the-server-secret-0123456789abcdef",
        algorithm="HS256",
    )
    ingest = tenant.token("ingest")
    for tok, expected in (
        (tenant.viewer, [["FORBIDDEN"]] * 4),
        (ingest, [["FORBIDDEN"], ["FORBIDDEN"], [], []]),  # ingest writes listeners, listens
        (token(f"t-ghost-{uuid.uuid4().hex[:8]}"), [["FORBIDDEN"]] * 4),
        (forged, [["UNAUTHENTICATED"]] * 4),
    ):
        for (mutation, items), expected_codes in zip(attacks, expected, strict=True):
            body = await api.post(mutation, {"items": items}, tok)
            assert codes(body) == expected_codes, (mutation, body)
    # Reads with B's cursors.
    for order in ORDER_KEYS:
        data = await api.data(TRACKS, {"first": 3, "order": order}, other_tenant.viewer)
        cursor = data["tracks"]["pageInfo"]["endCursor"]
        await api.data(TRACKS, {"first": 100, "order": order, "after": cursor}, tenant.viewer)

    assert await snapshot(storage, other_tenant.id) == b_before
    # The attacks did land, in A: the comparison above is not vacuous.
    a_after = await snapshot(storage, tenant.id)
    assert a_after != a_before
    assert len(a_after["listens"]) > len(a_before["listens"])
    assert len(a_after["artists"]) == len(a_before["artists"]) + 1  # A now has "only-in-b-artist"
