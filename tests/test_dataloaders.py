"""Nested lookups are batched: the number of MongoDB commands does not grow with page size.

The app runs in-process here (through httpx's ASGI transport) so that PyMongo's command
monitoring sees every command it sends to the real MongoDB-wire server.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator

import httpx
import pytest
from pymongo import monitoring

from tests.conftest import SeededTenant
from tests.helpers import SETTINGS
from tunelytics.app import create_app
from tunelytics.config import Settings
from tunelytics.domain.demo import DemoSize
from tunelytics.seeding import seed_demo
from tunelytics.storage import Storage, connect


class CommandLog(monitoring.CommandListener):
    def __init__(self) -> None:
        self.commands: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.commands.append(event.command_name)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@pytest.fixture(scope="module")
async def monitored(
    mongo_url: str, database_name: str
) -> AsyncIterator[tuple[Storage, CommandLog]]:
    log = CommandLog()
    storage = connect(mongo_url, database_name, listeners=[log])
    yield storage, log
    await storage.close()


@pytest.fixture(scope="module")
async def big_tenant(storage: Storage) -> SeededTenant:
    """Enough tracks and artists that a page of 100 spans dozens of artists."""
    slug = f"t-batching-{uuid.uuid4().hex[:8]}"
    size = DemoSize(artists=80, tracks=300, listeners=20, listens=400, days=10)
    return SeededTenant(slug, await seed_demo(storage, slug, size=size, seed=5))


async def run(storage: Storage, query: str, token: str) -> dict:
    settings = Settings(jwt_secret=SETTINGS.jwt_secret)
    app = create_app(settings, storage=storage)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.post(
            "/graphql", json={"query": query}, headers={"Authorization": f"Bearer {token}"}
        )
    body: dict = response.json()
    assert "errors" not in body, body
    return body


async def commands_for(
    monitored: tuple[Storage, CommandLog], query: str, token: str
) -> tuple[Counter[str], dict]:
    storage, log = monitored
    log.commands.clear()
    body = await run(storage, query, token)
    return Counter(log.commands), body


async def test_track_artists_take_one_query_whatever_the_page_size(
    monitored: tuple[Storage, CommandLog], big_tenant: SeededTenant
) -> None:
    counts = {}
    for first in (5, 50, 100):
        query = f"{{ tracks(first: {first}) {{ edges {{ node {{ id artist {{ name }} }} }} }} }}"
        commands, body = await commands_for(monitored, query, big_tenant.admin)
        edges = body["data"]["tracks"]["edges"]
        assert len(edges) == first
        assert len({e["node"]["artist"]["name"] for e in edges}) > 1
        counts[first] = commands
    # One find for the page of tracks, one batched find for all their artists.
    assert counts[5] == counts[50] == counts[100] == Counter({"find": 2})


async def test_deeper_nesting_stays_batched(
    monitored: tuple[Storage, CommandLog], big_tenant: SeededTenant
) -> None:
    query = """{ tracks(first: 100) { edges { node { artist { name
                 tracks(first: 3) { title artist { name } } } } } } }"""
    commands, body = await commands_for(monitored, query, big_tenant.admin)
    # tracks page, artists of the page, tracks of those artists; their artists are cached.
    # (A large result may also take getMore round trips: those grow with data, not nesting.)
    assert commands["find"] == 3
    for edge in body["data"]["tracks"]["edges"]:
        artist = edge["node"]["artist"]
        assert all(t["artist"]["name"] == artist["name"] for t in artist["tracks"])


async def test_listens_and_their_tracks_are_batched(
    monitored: tuple[Storage, CommandLog], big_tenant: SeededTenant
) -> None:
    listener = big_tenant.demo.listens[0].listener_id
    query = f"""{{ listener(id: "{listener}") {{ listens(first: 50) {{ edges {{ node {{
                 track {{ title artist {{ name }} }} }} }} }} }} }}"""
    commands, body = await commands_for(monitored, query, big_tenant.admin)
    assert body["data"]["listener"]["listens"]["edges"]
    # listener, its listens, their tracks, the tracks' artists.
    assert commands == Counter({"find": 4})


async def test_artists_reached_through_fragments_or_nodes_load_once(
    monitored: tuple[Storage, CommandLog], big_tenant: SeededTenant
) -> None:
    queries = [
        "{ tracks(first: 60) { ...Page } } fragment Page on TrackConnection "
        "{ edges { node { ... on Track { artist { name } } } } }",
        "{ tracks(first: 60) { nodes { artist { name } } } }",
        "{ a: tracks(first: 30) { nodes { artist { id } } } "
        "b: tracks(first: 30, orderBy: DURATION) { edges { node { artist { name } } } } }",
    ]
    for query in queries:
        commands, body = await commands_for(monitored, query, big_tenant.admin)
        pages = body["data"].values()
        assert all(page for page in pages)
        # Per list: its page, then its artists in one batch (fewer when already loaded).
        assert set(commands) == {"find"}, query
        assert len(pages) < commands["find"] <= 2 * len(pages), query


async def test_tracks_without_artists_read_no_artists(
    monitored: tuple[Storage, CommandLog], big_tenant: SeededTenant
) -> None:
    commands, _ = await commands_for(monitored, "{ tracks(first: 50) { nodes { id } } }",
                                     big_tenant.admin)  # fmt: skip
    assert commands == Counter({"find": 1})
