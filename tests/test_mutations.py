"""Batched writes through the real server: every valid item is stored, every invalid one is
reported by index, field, code and message, and roles decide who may write (or read) at all.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.conftest import SeededTenant
from tests.helpers import Api, codes
from tunelytics.config import Limits
from tunelytics.storage import Storage

REJECTED = "rejected { index field code message }"
UPSERT_ARTISTS = f"""mutation($items: [ArtistInput!]!) {{ upsertArtists(artists: $items) {{
  artists {{ id name genres country }} {REJECTED} }} }}"""
UPSERT_TRACKS = f"""mutation($items: [TrackInput!]!) {{ upsertTracks(tracks: $items) {{
  tracks {{ id title durationMs genres releasedAt listenCount artist {{ id }} }} {REJECTED} }} }}"""
UPSERT_LISTENERS = f"""mutation($items: [ListenerInput!]!) {{ upsertListeners(listeners: $items) {{
  listeners {{ id country plan signupAt }} {REJECTED} }} }}"""
RECORD_LISTENS = f"""mutation($items: [ListenInput!]!) {{ recordListens(listens: $items) {{
  listens {{ id trackId listenerId playedAt msPlayed skipped source }} {REJECTED} }} }}"""
MUTATIONS = {
    "upsertArtists": UPSERT_ARTISTS,
    "upsertTracks": UPSERT_TRACKS,
    "upsertListeners": UPSERT_LISTENERS,
    "recordListens": RECORD_LISTENS,
}
MAX_BATCH = Limits.max_batch
GENERATED_ARTIST_ID = re.compile(r"ar-[0-9a-f]{16}")
GENERATED_TRACK_ID = re.compile(r"tr-[0-9a-f]{16}")


async def mutate(api: Api, tok: str, name: str, items: list[dict]) -> dict[str, Any]:
    data = await api.data(MUTATIONS[name], {"items": items}, tok)
    payload: dict[str, Any] = data[name]
    return payload


def rejections(payload: dict[str, Any]) -> list[tuple[int, str | None, str]]:
    for item in payload["rejected"]:
        assert item["message"], item  # every rejection says why
    return [(r["index"], r["field"], r["code"]) for r in payload["rejected"]]


async def read(api: Api, tok: str, field: str, item_id: str, selection: str) -> dict | None:
    body = await api.post(
        f"query($id: ID!) {{ {field}(id: $id) {{ {selection} }} }}", {"id": item_id}, tok
    )
    if body["data"][field] is None:
        assert codes(body) == ["NOT_FOUND"], body
    result: dict | None = body["data"][field]
    return result


async def listen_count(api: Api, tok: str, track_id: str) -> int:
    track = await read(api, tok, "track", track_id, "listenCount")
    assert track is not None
    return int(track["listenCount"])


async def counts(storage: Storage, tenant_id: str) -> dict[str, int]:
    """Documents per collection, and all listen counts: what a write would change."""
    result = {
        name: await storage.db[name].count_documents({"tenant_id": tenant_id})
        for name in ("artists", "tracks", "listeners", "listens")
    }
    tracks = await storage.db["tracks"].find({"tenant_id": tenant_id}).to_list()
    result["listen_counts"] = sum(doc["listen_count"] for doc in tracks)
    return result


def iso(moment: datetime) -> str:
    return moment.isoformat()


def parse(value: str) -> datetime:
    return datetime.fromisoformat(value)


def most_played(tenant: SeededTenant) -> Any:
    return max(tenant.demo.tracks, key=lambda t: (t.listen_count, t.id))


# upsertArtists


async def test_upsert_artists_stores_valid_and_reports_invalid_items(
    api: Api, tenant: SeededTenant
) -> None:
    payload = await mutate(
        api,
        tenant.admin,
        "upsertArtists",
        [
            {"id": "ar-new-1", "name": "  New One ", "genres": ["Rock", "rock ", "Indie"],
             "country": "SE"},
            {"id": "ar-empty", "name": "   "},
            {"name": "Generated Id"},
            {"id": "bad id", "name": "Spaces"},
            {"id": "ar-country", "name": "X", "country": "se"},
            {"id": "ar-genres", "name": "X", "genres": [f"g{i}" for i in range(11)]},
            {"id": "ar-genre-long", "name": "X", "genres": ["x" * 41]},
            {"id": "ar-new-1", "name": "Duplicate"},
            {"id": "ar-long", "name": "n" * 301},
            {"id": "ar-newline\n", "name": "Trailing newline"},
            {"id": "-leading", "name": "Leading symbol"},
            {"name": "Generated Too", "genres": []},
        ],
    )  # fmt: skip
    assert rejections(payload) == [
        (1, "name", "BAD_USER_INPUT"),
        (3, "id", "BAD_USER_INPUT"),
        (4, "country", "BAD_USER_INPUT"),
        (5, "genres", "BAD_USER_INPUT"),
        (6, "genres", "BAD_USER_INPUT"),
        (7, "id", "BAD_USER_INPUT"),
        (8, "name", "BAD_USER_INPUT"),
        (9, "id", "BAD_USER_INPUT"),
        (10, "id", "BAD_USER_INPUT"),
    ]
    messages = {r["index"]: r["message"] for r in payload["rejected"]}
    assert "ar-new-1 appears earlier in this batch" in messages[7]
    assert "ISO 3166-1" in messages[4]

    stored = payload["artists"]
    assert [a["name"] for a in stored] == ["New One", "Generated Id", "Generated Too"]
    assert stored[0] == {
        "id": "ar-new-1",
        "name": "New One",
        "genres": ["rock", "indie"],
        "country": "SE",
    }
    generated = [stored[1]["id"], stored[2]["id"]]
    assert all(GENERATED_ARTIST_ID.fullmatch(i) for i in generated), generated
    assert generated[0] != generated[1]

    # Read back through the API: the valid items are there, the invalid ones are not.
    for artist in stored:
        selection = "id name genres country"
        assert await read(api, tenant.viewer, "artist", artist["id"], selection) == artist
    for item_id in ("ar-empty", "bad id", "ar-country", "ar-genres", "ar-genre-long", "ar-long",
                    "ar-newline\n", "-leading"):  # fmt: skip
        assert await read(api, tenant.viewer, "artist", item_id, "id") is None, item_id
    data = await api.data("{ artists(first: 100) { nodes { id } } }", token=tenant.viewer)
    assert len(data["artists"]["nodes"]) == len(tenant.demo.artists) + 3


async def test_upsert_artists_updates_in_place(api: Api, tenant: SeededTenant) -> None:
    artist = tenant.demo.artists[0]
    payload = await mutate(
        api,
        tenant.admin,
        "upsertArtists",
        [{"id": artist.id, "name": "Renamed", "genres": ["Jazz"]}],
    )
    assert payload["rejected"] == []
    expected = {"id": artist.id, "name": "Renamed", "genres": ["jazz"], "country": None}
    assert payload["artists"] == [expected]
    assert await read(api, tenant.viewer, "artist", artist.id, "id name genres country") == expected
    # Its tracks still belong to it.
    data = await api.data(
        "query($id: ID!) { artist(id: $id) { tracks(first: 100) { id } } }",
        {"id": artist.id},
        tenant.viewer,
    )
    assert {t["id"] for t in data["artist"]["tracks"]} == {
        t.id for t in tenant.demo.tracks if t.artist_id == artist.id
    }


# upsertTracks


async def test_upsert_tracks_stores_valid_and_reports_invalid_items(
    api: Api, tenant: SeededTenant
) -> None:
    popular = most_played(tenant)
    assert popular.listen_count > 0
    payload = await mutate(
        api,
        tenant.admin,
        "upsertTracks",
        [
            {"id": "tr-new-1", "title": " Brand New ", "artistId": "ar-0001",
             "durationMs": 200_000, "genres": ["Pop"], "releasedAt": "2020-05-01T00:00:00Z"},
            {"id": "tr-zero", "title": "Zero", "artistId": "ar-0001", "durationMs": 0},
            {"id": "tr-huge", "title": "Huge", "artistId": "ar-0001",
             "durationMs": 6 * 3600 * 1000 + 1},
            {"id": "tr-blank", "title": "   ", "artistId": "ar-0001", "durationMs": 1000},
            {"id": "tr-orphan", "title": "Orphan", "artistId": "ar-nobody", "durationMs": 1000},
            {"title": "Generated", "artistId": "ar-0002", "durationMs": 1000},
            {"id": "tr-new-1", "title": "Duplicate", "artistId": "ar-0001", "durationMs": 1000},
            {"id": "tr-bad-artist", "title": "X", "artistId": "bad id", "durationMs": 1000},
            {"id": popular.id, "title": "Updated", "artistId": "ar-0002", "durationMs": 300_000},
            {"id": "tr-negative", "title": "Negative", "artistId": "ar-0001", "durationMs": -5},
            {"id": "tr bad", "title": "Bad id", "artistId": "ar-0001", "durationMs": 1000},
            {"id": "tr-exact-max", "title": "Longest", "artistId": "ar-0001",
             "durationMs": 6 * 3600 * 1000},
        ],
    )  # fmt: skip
    # Rejections come in index order even though unknown artists are found after the rest.
    assert rejections(payload) == [
        (1, "durationMs", "BAD_USER_INPUT"),
        (2, "durationMs", "BAD_USER_INPUT"),
        (3, "title", "BAD_USER_INPUT"),
        (4, "artistId", "NOT_FOUND"),
        (6, "id", "BAD_USER_INPUT"),
        (7, "artistId", "BAD_USER_INPUT"),
        (9, "durationMs", "BAD_USER_INPUT"),
        (10, "id", "BAD_USER_INPUT"),
    ]
    assert "unknown artist ar-nobody" in payload["rejected"][3]["message"]

    stored = {t["title"]: t for t in payload["tracks"]}
    assert list(stored) == ["Brand New", "Generated", "Updated", "Longest"]
    assert stored["Brand New"] == {
        "id": "tr-new-1",
        "title": "Brand New",
        "durationMs": 200_000,
        "genres": ["pop"],
        "releasedAt": "2020-05-01T00:00:00+00:00",
        "listenCount": 0,
        "artist": {"id": "ar-0001"},
    }
    assert GENERATED_TRACK_ID.fullmatch(stored["Generated"]["id"])
    # An update keeps the listens already counted.
    assert stored["Updated"]["id"] == popular.id
    assert stored["Updated"]["listenCount"] == popular.listen_count

    selection = "id title durationMs genres releasedAt listenCount artist { id }"
    for track in payload["tracks"]:
        assert await read(api, tenant.viewer, "track", track["id"], selection) == track
    for item_id in ("tr-zero", "tr-huge", "tr-blank", "tr-orphan", "tr-bad-artist",
                    "tr-negative", "tr bad"):  # fmt: skip
        assert await read(api, tenant.viewer, "track", item_id, "id") is None, item_id
    data = await api.data("{ tracks(first: 1) { totalCount } }", token=tenant.viewer)
    assert data["tracks"]["totalCount"] == len(tenant.demo.tracks) + 3
    # The first of the duplicated IDs won.
    assert (await read(api, tenant.viewer, "track", "tr-new-1", "title")) == {"title": "Brand New"}


async def test_updates_keep_the_listen_count(api: Api, tenant: SeededTenant) -> None:
    track = most_played(tenant)
    payload = await mutate(
        api,
        tenant.admin,
        "recordListens",
        [{"listenerId": "li-00001", "trackId": track.id, "msPlayed": 40_000}] * 3,
    )
    assert len(payload["listens"]) == 3
    for title in ("Once", "Twice"):
        payload = await mutate(
            api,
            tenant.admin,
            "upsertTracks",
            [{"id": track.id, "title": title, "artistId": track.artist_id, "durationMs": 99_000}],
        )
        assert payload["tracks"][0]["listenCount"] == track.listen_count + 3
    got = await read(api, tenant.viewer, "track", track.id, "title durationMs listenCount")
    assert got == {"title": "Twice", "durationMs": 99_000, "listenCount": track.listen_count + 3}


async def test_an_update_changes_the_release_date(api: Api, tenant: SeededTenant) -> None:
    """The date an update writes reads back as that date (docs/mongodb-compat.md p)."""
    track = most_played(tenant)
    for released in ("2019-03-01T10:00:00Z", "2021-07-15T00:30:00Z"):
        item = {"id": track.id, "title": track.title, "artistId": track.artist_id,
                "durationMs": track.duration_ms, "releasedAt": released}  # fmt: skip
        payload = await mutate(api, tenant.admin, "upsertTracks", [item])
        assert payload["tracks"][0]["releasedAt"] == released.replace("Z", "+00:00")
    got = await read(api, tenant.viewer, "track", track.id, "releasedAt")
    assert got == {"releasedAt": "2021-07-15T00:30:00+00:00"}


# upsertListeners


async def test_upsert_listeners_stores_valid_and_reports_invalid_items(
    api: Api, tenant: SeededTenant
) -> None:
    existing = tenant.demo.listeners[0]
    future = iso(datetime.now(UTC) + timedelta(days=1))
    payload = await mutate(
        api,
        tenant.admin,
        "upsertListeners",
        [
            {"id": "li-new-1", "country": "SE", "plan": "premium",
             "signupAt": "2024-01-01T00:00:00Z"},
            {"id": "li-country", "country": "sweden", "plan": "free"},
            {"id": "li-plan", "country": "SE", "plan": "gold"},
            {"id": "li-future", "country": "SE", "plan": "free", "signupAt": future},
            {"id": "bad id", "country": "SE", "plan": "free"},
            {"id": "li-new-1", "country": "US", "plan": "free"},
            {"id": existing.id, "country": "BR", "plan": "student",
             "signupAt": "2020-01-01T00:00:00Z"},
            {"id": "li-lower", "country": "se", "plan": "free"},
            {"id": "li-new-2", "country": "JP", "plan": "family"},
        ],
    )  # fmt: skip
    assert rejections(payload) == [
        (1, "country", "BAD_USER_INPUT"),
        (2, "plan", "BAD_USER_INPUT"),
        (3, "signupAt", "BAD_USER_INPUT"),
        (4, "id", "BAD_USER_INPUT"),
        (5, "id", "BAD_USER_INPUT"),
        (7, "country", "BAD_USER_INPUT"),
    ]
    stored = {li["id"]: li for li in payload["listeners"]}
    assert list(stored) == ["li-new-1", existing.id, "li-new-2"]
    assert stored["li-new-1"] == {
        "id": "li-new-1",
        "country": "SE",
        "plan": "premium",
        "signupAt": "2024-01-01T00:00:00+00:00",
    }
    # An update changes country and plan but keeps the original signup date.
    assert stored[existing.id]["country"] == "BR"
    assert stored[existing.id]["plan"] == "student"
    assert parse(stored[existing.id]["signupAt"]) == existing.signup_at
    for listener in payload["listeners"]:
        selection = "id country plan signupAt"
        assert await read(api, tenant.viewer, "listener", listener["id"], selection) == listener
    for item_id in ("li-country", "li-plan", "li-future", "bad id", "li-lower"):
        assert await read(api, tenant.viewer, "listener", item_id, "id") is None, item_id


# recordListens


@pytest.fixture
async def short_track(api: Api, tenant: SeededTenant) -> str:
    """A 20-second track: shorter than the 30 seconds that make a listen count."""
    payload = await mutate(
        api,
        tenant.admin,
        "upsertTracks",
        [{"id": "tr-short", "title": "Short", "artistId": "ar-0001", "durationMs": 20_000}],
    )
    assert payload["rejected"] == []
    return "tr-short"


async def test_record_listens_validates_each_item(
    api: Api, tenant: SeededTenant, short_track: str
) -> None:
    track = tenant.demo.tracks[0]
    listener = "li-00001"
    now = datetime.now(UTC)
    almost_a_year = now - timedelta(days=364)

    def listen(**fields: Any) -> dict[str, Any]:
        return {"listenerId": listener, "trackId": track.id, "msPlayed": 60_000, **fields}

    items = [
        listen(msPlayed=29_999),  # 0: under 30 s, so skipped
        listen(msPlayed=30_000),  # 1: 30 s counts as played
        listen(msPlayed=1_000, skipped=False),  # 2: the client's flag wins
        listen(msPlayed=track.duration_ms, skipped=True),  # 3
        listen(trackId=short_track, msPlayed=20_000),  # 4: a whole short track is no skip
        listen(trackId=short_track, msPlayed=10_000),  # 5
        listen(playedAt=iso(now + timedelta(hours=1))),  # 6: the future
        listen(playedAt=iso(now - timedelta(days=366))),  # 7: over a year old
        listen(msPlayed=-1),  # 8
        listen(msPlayed=track.duration_ms + 5_000),  # 9: longer than the track
        listen(source="spotify"),  # 10
        listen(listenerId="li-nobody"),  # 11
        listen(trackId="tr-nothing"),  # 12
        listen(playedAt=iso(almost_a_year), source="radio"),  # 13
        listen(),  # 14: playedAt defaults to now
        listen(msPlayed=track.duration_ms),  # 15: exactly the whole track
    ]
    before = datetime.now(UTC)
    payload = await mutate(api, tenant.admin, "recordListens", items)
    after = datetime.now(UTC)
    assert rejections(payload) == [
        (6, "playedAt", "BAD_USER_INPUT"),
        (7, "playedAt", "BAD_USER_INPUT"),
        (8, "msPlayed", "BAD_USER_INPUT"),
        (9, "msPlayed", "BAD_USER_INPUT"),
        (10, "source", "BAD_USER_INPUT"),
        (11, "listenerId", "NOT_FOUND"),
        (12, "trackId", "NOT_FOUND"),
    ]
    messages = [r["message"] for r in payload["rejected"]]
    assert "future" in messages[0]
    assert "year" in messages[1]
    assert "li-nobody" in messages[5]
    assert "tr-nothing" in messages[6]

    stored = payload["listens"]
    accepted = [0, 1, 2, 3, 4, 5, 13, 14, 15]
    assert [(s["trackId"], s["msPlayed"]) for s in stored] == [
        (items[i]["trackId"], items[i]["msPlayed"]) for i in accepted
    ]
    assert [s["skipped"] for s in stored] == [
        True,
        False,
        False,
        True,
        False,
        True,
        False,
        False,
        False,
    ]
    assert [s["source"] for s in stored] == ["other"] * 6 + ["radio", "other", "other"]
    assert all(s["listenerId"] == listener for s in stored)
    assert len({s["id"] for s in stored}) == len(stored)
    assert parse(stored[6]["playedAt"]) == almost_a_year
    # Left out, playedAt is the time the server stored the listen.
    assert (
        before - timedelta(seconds=1)
        <= parse(stored[7]["playedAt"])
        <= after + timedelta(seconds=1)
    )

    # listenCount counts the stored listens only.
    assert await listen_count(api, tenant.viewer, track.id) == track.listen_count + 7
    assert await listen_count(api, tenant.viewer, short_track) == 2
    # The listener's history has them.
    data = await api.data(
        """query($id: ID!) { listener(id: $id) {
             listens(first: 100) { nodes { id msPlayed skipped } } } }""",
        {"id": listener},
        tenant.viewer,
    )
    history = {n["id"]: n for n in data["listener"]["listens"]["nodes"]}
    for s in stored:
        assert history[s["id"]] == {
            "id": s["id"],
            "msPlayed": s["msPlayed"],
            "skipped": s["skipped"],
        }
    own = sum(1 for li in tenant.demo.listens if li.listener_id == listener)
    assert len(history) == min(100, own + len(stored))


async def test_a_batch_of_only_invalid_listens_stores_nothing(
    api: Api, storage: Storage, tenant: SeededTenant
) -> None:
    before = await counts(storage, tenant.id)
    payload = await mutate(
        api,
        tenant.admin,
        "recordListens",
        [
            {"listenerId": "li-00001", "trackId": "tr-00001", "msPlayed": -1},
            {"listenerId": "li-nobody", "trackId": "tr-00001", "msPlayed": 1},
        ],
    )
    assert payload["listens"] == []
    assert rejections(payload) == [
        (0, "msPlayed", "BAD_USER_INPUT"),
        (1, "listenerId", "NOT_FOUND"),
    ]
    assert await counts(storage, tenant.id) == before


async def test_empty_batches_are_fine(api: Api, storage: Storage, tenant: SeededTenant) -> None:
    before = await counts(storage, tenant.id)
    for name in MUTATIONS:
        payload = await mutate(api, tenant.admin, name, [])
        assert payload["rejected"] == []
        assert next(v for k, v in payload.items() if k != "rejected") == []
    assert await counts(storage, tenant.id) == before


# Limits and types


def one_valid(name: str, i: int) -> dict[str, Any]:
    return {
        "upsertArtists": {"id": f"ar-bulk-{i}", "name": f"Bulk {i}"},
        "upsertTracks": {
            "id": f"tr-bulk-{i}",
            "title": f"Bulk {i}",
            "artistId": "ar-0001",
            "durationMs": 100_000,
        },
        "upsertListeners": {"id": f"li-bulk-{i}", "country": "SE", "plan": "free"},
        "recordListens": {"listenerId": "li-00001", "trackId": "tr-00001", "msPlayed": 40_000},
    }[name]


@pytest.mark.parametrize("name", list(MUTATIONS))
async def test_a_batch_over_the_limit_is_one_error_and_stores_nothing(
    api: Api, storage: Storage, tenant: SeededTenant, name: str
) -> None:
    before = await counts(storage, tenant.id)
    items = [one_valid(name, i) for i in range(MAX_BATCH + 1)]
    body = await api.post(MUTATIONS[name], {"items": items}, tenant.admin)
    assert body["data"] is None
    assert codes(body) == ["BAD_USER_INPUT"]
    message = body["errors"][0]["message"]
    assert str(MAX_BATCH) in message and str(MAX_BATCH + 1) in message
    assert await counts(storage, tenant.id) == before


async def test_a_batch_at_the_limit_is_stored(api: Api, tenant: SeededTenant) -> None:
    items = [one_valid("recordListens", i) for i in range(MAX_BATCH)]
    payload = await mutate(api, tenant.admin, "recordListens", items)
    assert payload["rejected"] == []
    assert len(payload["listens"]) == MAX_BATCH
    assert await listen_count(api, tenant.viewer, "tr-00001") == (
        tenant.demo.tracks[0].listen_count + MAX_BATCH
    )


WRONG_TYPES = [
    ("upsertTracks", {"title": "T", "artistId": "ar-0001", "durationMs": "long"}),
    ("upsertTracks", {"title": "T", "artistId": "ar-0001", "durationMs": 3.5}),
    ("upsertTracks", {"title": "T", "artistId": "ar-0001", "durationMs": 2**31}),
    ("upsertTracks", {"title": None, "artistId": "ar-0001", "durationMs": 1000}),
    ("upsertTracks", {"title": "T", "durationMs": 1000}),
    ("upsertTracks", {"title": "T", "artistId": "ar-0001", "durationMs": 1, "releasedAt": "May"}),
    ("upsertTracks", {"title": "T", "artistId": "ar-0001", "durationMs": 1, "genres": [1, 2]}),
    ("upsertArtists", {"name": 123}),
    ("upsertArtists", {"name": "A", "country": ["SE"]}),
    ("upsertArtists", {"name": "A", "unknownField": 1}),
    ("upsertListeners", {"id": "li-x", "country": "SE", "plan": "free", "signupAt": "soon"}),
    ("upsertListeners", {"country": "SE", "plan": "free"}),
    ("recordListens", {"listenerId": "li-00001", "trackId": "tr-00001", "msPlayed": "long"}),
    ("recordListens", {"listenerId": "li-00001", "trackId": "tr-00001", "msPlayed": 1,
                       "skipped": "yes"}),
    ("recordListens", {"listenerId": "li-00001", "trackId": "tr-00001", "msPlayed": 1,
                       "playedAt": "yesterday"}),
    ("recordListens", {"listenerId": None, "trackId": "tr-00001", "msPlayed": 1}),
]  # fmt: skip


@pytest.mark.parametrize(("name", "bad"), WRONG_TYPES)
async def test_wrong_types_are_bad_user_input_and_store_nothing(
    api: Api, storage: Storage, tenant: SeededTenant, name: str, bad: dict
) -> None:
    before = await counts(storage, tenant.id)
    # The valid item beside it is not stored either: the request as a whole is malformed.
    body = await api.post(MUTATIONS[name], {"items": [one_valid(name, 0), bad]}, tenant.admin)
    assert body["data"] is None
    assert codes(body) and set(codes(body)) == {"BAD_USER_INPUT"}  # one error per bad value
    assert all(error["message"] for error in body["errors"])
    assert await counts(storage, tenant.id) == before


async def test_wrong_types_written_in_the_query_are_bad_user_input(
    api: Api, storage: Storage, tenant: SeededTenant
) -> None:
    before = await counts(storage, tenant.id)
    for query in (
        'mutation { upsertTracks(tracks: [{title: "T", artistId: "ar-0001", durationMs: "long"}])'
        " { tracks { id } } }",
        'mutation { recordListens(listens: [{listenerId: "li-00001", trackId: "tr-00001",'
        " msPlayed: 1.5}]) { listens { id } } }",
        'mutation { upsertArtists(artists: [{name: "A", tenantId: "x"}]) { artists { id } } }',
    ):
        body = await api.post(query, token=tenant.admin)
        assert body["data"] is None, query
        assert codes(body) == ["BAD_USER_INPUT"], query
    assert await counts(storage, tenant.id) == before


# Roles


VALID = {
    "upsertArtists": [{"id": "ar-role", "name": "Role"}],
    "upsertTracks": [{"id": "tr-role", "title": "Role", "artistId": "ar-0001", "durationMs": 1}],
    "upsertListeners": [{"id": "li-role", "country": "SE", "plan": "free"}],
    "recordListens": [{"listenerId": "li-00001", "trackId": "tr-00001", "msPlayed": 1}],
}


@pytest.mark.parametrize("role", ["viewer", "analyst"])
async def test_readers_may_not_write(
    api: Api, storage: Storage, tenant: SeededTenant, role: str
) -> None:
    before = await counts(storage, tenant.id)
    tok = tenant.token(role)
    for name, items in VALID.items():
        body = await api.post(MUTATIONS[name], {"items": items}, tok)
        assert body["data"] is None, name
        assert codes(body) == ["FORBIDDEN"], name
        assert role in body["errors"][0]["message"]
    assert await counts(storage, tenant.id) == before
    # The same token reads.
    data = await api.data("{ tracks(first: 1) { totalCount } }", token=tok)
    assert data["tracks"]["totalCount"] == len(tenant.demo.tracks)


async def test_ingest_writes_listeners_and_listens_only(
    api: Api, storage: Storage, tenant: SeededTenant
) -> None:
    ingest = tenant.token("ingest")
    before = await counts(storage, tenant.id)
    for name in ("upsertArtists", "upsertTracks"):
        body = await api.post(MUTATIONS[name], {"items": VALID[name]}, ingest)
        assert body["data"] is None, name
        assert codes(body) == ["FORBIDDEN"], name
    assert await counts(storage, tenant.id) == before

    # The writes it may do, with a selection of what it wrote (no reads of other data).
    body = await api.post(
        "mutation($items: [ListenerInput!]!) { upsertListeners(listeners: $items) {"
        " listeners { id country plan } rejected { index } } }",
        {"items": VALID["upsertListeners"]},
        ingest,
    )
    assert body == {
        "data": {
            "upsertListeners": {
                "listeners": [{"id": "li-role", "country": "SE", "plan": "free"}],
                "rejected": [],
            }
        }
    }
    body = await api.post(
        "mutation($items: [ListenInput!]!) { recordListens(listens: $items) {"
        " listens { trackId listenerId msPlayed } rejected { index } } }",
        {"items": VALID["recordListens"]},
        ingest,
    )
    assert body == {
        "data": {
            "recordListens": {
                "listens": [{"trackId": "tr-00001", "listenerId": "li-00001", "msPlayed": 1}],
                "rejected": [],
            }
        }
    }
    after = await counts(storage, tenant.id)
    assert after["listeners"] == before["listeners"] + 1
    assert after["listens"] == before["listens"] + 1
    assert after["listen_counts"] == before["listen_counts"] + 1


READS = {
    "track": '{ track(id: "tr-00001") { id title } }',
    "artist": '{ artist(id: "ar-0001") { id name } }',
    "listener": '{ listener(id: "li-00001") { id country } }',
    "tracks": "{ tracks(first: 5) { nodes { id title } } }",
    "artists": "{ artists(first: 5) { nodes { id name } } }",
    "tenant": "{ tenant { id name } }",
}


async def test_ingest_may_not_read(api: Api, tenant: SeededTenant) -> None:
    ingest = tenant.token("ingest")
    for field, query in READS.items():
        body = await api.post(query, token=ingest)
        assert body["data"] in (None, {field: None}), field
        assert codes(body) == ["FORBIDDEN"], field
        assert "ingest" in body["errors"][0]["message"]
    # It may ask who it is, but not read its tenant's details through that.
    body = await api.post("{ viewer { tenantId roles tenant { name } } }", token=ingest)
    assert body["data"] == {"viewer": {"tenantId": tenant.id, "roles": ["INGEST"], "tenant": None}}
    assert codes(body) == ["FORBIDDEN"]


async def test_ingest_may_not_read_through_mutation_payloads(
    api: Api, storage: Storage, tenant: SeededTenant
) -> None:
    """A payload's nested objects are reads: an ingest token writes, it does not get the
    catalogue or anyone's listening history back."""
    ingest = tenant.token("ingest")
    track = tenant.demo.tracks[0]
    body = await api.post(
        """mutation($items: [ListenInput!]!) { recordListens(listens: $items) {
             listens { trackId track { title artist { name } } listener { country } } } }""",
        {"items": [{"listenerId": "li-00001", "trackId": track.id, "msPlayed": 40_000}]},
        ingest,
    )
    assert body["data"] == {
        "recordListens": {"listens": [{"trackId": track.id, "track": None, "listener": None}]}
    }
    assert sorted(codes(body)) == ["FORBIDDEN", "FORBIDDEN"]
    assert sorted(e["path"][-1] for e in body["errors"]) == ["listener", "track"]
    # The write itself happened.
    assert await listen_count(api, tenant.viewer, track.id) == track.listen_count + 1

    body = await api.post(
        """mutation($items: [ListenerInput!]!) { upsertListeners(listeners: $items) {
             listeners { id listens(first: 100) { nodes { trackId msPlayed } } } } }""",
        {"items": [{"id": "li-00002", "country": "SE", "plan": "free"}]},
        ingest,
    )
    assert body["data"] is None  # the FORBIDDEN connection is not nullable
    assert codes(body) == ["FORBIDDEN"]
    assert "nodes" not in str(body)
    listener = await read(api, tenant.viewer, "listener", "li-00002", "country plan")
    assert listener == {"country": "SE", "plan": "free"}


async def test_admin_may_do_everything(api: Api, storage: Storage, tenant: SeededTenant) -> None:
    before = await counts(storage, tenant.id)
    for name, items in VALID.items():
        payload = await mutate(api, tenant.admin, name, items)
        assert payload["rejected"] == [], name
    after = await counts(storage, tenant.id)
    assert {k: after[k] - before[k] for k in after} == {
        "artists": 1,
        "tracks": 1,
        "listeners": 1,
        "listens": 1,
        "listen_counts": 1,
    }
    for field, query in READS.items():
        body = await api.post(query, token=tenant.admin)
        assert "errors" not in body, field
        assert body["data"][field], field
