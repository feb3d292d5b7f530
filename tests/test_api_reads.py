"""Reads through a real uvicorn server on the embedded MongoDB-wire server."""

from __future__ import annotations

from tests.conftest import SeededTenant
from tests.helpers import Api, codes

TRACKS = """
query Tracks($first: Int!, $after: String, $order: TrackOrderBy!, $filter: TrackFilter) {
  tracks(first: $first, after: $after, orderBy: $order, filter: $filter) {
    totalCount
    edges { cursor node { id title durationMs genres listenCount artist { id name } } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}
"""


async def walk(
    api: Api, token: str, order: str, first: int, filter: dict | None = None
) -> list[dict]:
    nodes: list[dict] = []
    after = None
    while True:
        data = await api.data(
            TRACKS, {"first": first, "after": after, "order": order, "filter": filter}, token
        )
        page = data["tracks"]
        nodes += [edge["node"] for edge in page["edges"]]
        assert page["pageInfo"]["hasPreviousPage"] == (after is not None)
        if not page["pageInfo"]["hasNextPage"]:
            return nodes
        after = page["pageInfo"]["endCursor"]


async def test_pages_cover_every_track_once_in_each_order(api: Api, tenant: SeededTenant) -> None:
    expected = {t.id: t for t in tenant.demo.tracks}
    by_key = {
        "TITLE": lambda n: (n["title"], n["id"]),
        "DURATION": lambda n: (n["durationMs"], n["id"]),
        "POPULARITY": lambda n: (-n["listenCount"], n["id"]),
        "ID": lambda n: n["id"],
    }
    for order, key in by_key.items():
        nodes = await walk(api, tenant.viewer, order, first=7)
        assert [n["id"] for n in nodes] == [n["id"] for n in sorted(nodes, key=key)], order
        assert sorted(n["id"] for n in nodes) == sorted(expected), order
    artists = {a.id: a.name for a in tenant.demo.artists}
    for node in nodes:
        track = expected[node["id"]]
        assert node["title"] == track.title
        assert node["durationMs"] == track.duration_ms
        assert node["listenCount"] == track.listen_count
        assert node["artist"] == {"id": track.artist_id, "name": artists[track.artist_id]}


async def test_filters_and_total_count(api: Api, tenant: SeededTenant) -> None:
    genre = tenant.demo.tracks[0].genres[0]
    expected = {t.id for t in tenant.demo.tracks if genre in t.genres}
    data = await api.data(
        TRACKS, {"first": 100, "order": "ID", "filter": {"genre": genre.upper()}}, tenant.viewer
    )
    assert {e["node"]["id"] for e in data["tracks"]["edges"]} == expected
    assert data["tracks"]["totalCount"] == len(expected)

    lo, hi = 180_000, 240_000
    nodes = await walk(
        api, tenant.viewer, "DURATION", 10, {"minDurationMs": lo, "maxDurationMs": hi}
    )
    assert {n["id"] for n in nodes} == {
        t.id for t in tenant.demo.tracks if lo <= t.duration_ms <= hi
    }

    word = tenant.demo.tracks[3].title.split()[0]
    nodes = await walk(api, tenant.viewer, "TITLE", 50, {"titleContains": word.lower()})
    assert {n["id"] for n in nodes} == {
        t.id for t in tenant.demo.tracks if word.lower() in t.title.lower()
    }

    artist = tenant.demo.artists[0].id
    nodes = await walk(api, tenant.viewer, "TITLE", 50, {"artistId": artist})
    assert {n["id"] for n in nodes} == {t.id for t in tenant.demo.tracks if t.artist_id == artist}


async def test_regex_characters_in_title_filter_are_literal(api: Api, tenant: SeededTenant) -> None:
    data = await api.data(
        TRACKS, {"first": 10, "order": "ID", "filter": {"titleContains": ".*"}}, tenant.viewer
    )
    assert data["tracks"]["edges"] == []


async def test_cursor_errors(api: Api, tenant: SeededTenant) -> None:
    data = await api.data(TRACKS, {"first": 2, "order": "TITLE"}, tenant.viewer)
    title_cursor = data["tracks"]["pageInfo"]["endCursor"]
    for cursor in ("not-a-cursor", "e30", title_cursor + "x"):
        body = await api.post(
            TRACKS, {"first": 2, "order": "TITLE", "after": cursor}, tenant.viewer
        )
        assert codes(body) == ["BAD_USER_INPUT"], (cursor, body)
    # A cursor from one order is refused by another rather than silently misplaced.
    body = await api.post(
        TRACKS, {"first": 2, "order": "DURATION", "after": title_cursor}, tenant.viewer
    )
    assert codes(body) == ["BAD_USER_INPUT"]


async def test_page_size_limits(api: Api, tenant: SeededTenant) -> None:
    for first in (0, -1, 101):
        body = await api.post(TRACKS, {"first": first, "order": "ID"}, tenant.viewer)
        assert codes(body) == ["BAD_USER_INPUT"]
    body = await api.post(TRACKS, {"first": "ten", "order": "ID"}, tenant.viewer)
    assert codes(body) == ["BAD_USER_INPUT"]


async def test_single_lookups_and_not_found(api: Api, tenant: SeededTenant) -> None:
    track = tenant.demo.tracks[5]
    data = await api.data(
        "query($id: ID!) { track(id: $id) { id title artist { id tracks(first: 100) { id } } } }",
        {"id": track.id},
        tenant.viewer,
    )
    assert data["track"]["title"] == track.title
    assert track.id in {t["id"] for t in data["track"]["artist"]["tracks"]}

    for field in ("track", "artist", "listener"):
        body = await api.post(f'{{ {field}(id: "nope-123") {{ id }} }}', token=tenant.viewer)
        assert body["data"] == {field: None}
        assert codes(body) == ["NOT_FOUND"]


async def test_listener_with_recent_listens(api: Api, tenant: SeededTenant) -> None:
    counts: dict[str, int] = {}
    for listen in tenant.demo.listens:
        counts[listen.listener_id] = counts.get(listen.listener_id, 0) + 1
    listener_id = max(counts, key=lambda k: counts[k])
    query = """query($id: ID!, $after: String) { listener(id: $id) { id country plan
        listens(first: 9, after: $after) { edges { node { playedAt msPlayed skipped
          track { id title } listener { id } } }
          pageInfo { hasNextPage endCursor } } } }"""
    seen: list[dict] = []
    after = None
    while True:
        data = await api.data(query, {"id": listener_id, "after": after}, tenant.viewer)
        page = data["listener"]["listens"]
        seen += [e["node"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert len(seen) == counts[listener_id]
    played = [n["playedAt"] for n in seen]
    assert played == sorted(played, reverse=True)
    assert all(n["listener"]["id"] == listener_id for n in seen)


async def test_viewer_and_tenant(api: Api, tenant: SeededTenant) -> None:
    data = await api.data(
        "{ viewer { subject roles tenantId tenant { id name } } }",
        token=tenant.token("viewer", "analyst"),
    )
    assert data["viewer"]["roles"] == ["ANALYST", "VIEWER"]
    assert data["viewer"]["tenant"]["id"] == tenant.id
    data = await api.data("{ tenant { id name retentionDays } }", token=tenant.viewer)
    assert data["tenant"] == {"id": tenant.id, "name": f"Tenant {tenant.id}", "retentionDays": 30}
