"""A "bare" Strawberry server: the framework's ceiling for the benchmark queries.

It serves the same GraphQL shape as tunelytics for what the benchmarks ask
(`tracks` as a Relay connection with each track's artist, `recordListens`, and the
`listens` subscription) from in-memory lists built by the same deterministic demo
generator, with no database, no authentication, no rate limit, no metrics and no logging.
It keeps what any Strawberry server would have: Starlette, uvicorn with the same protocol
choices, and the parser and validation caches the real schema uses. The gap between it
and `tunelytics serve` is therefore what the product's own layers cost.

    python benchmarks/bare_server.py --port 8001
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
from collections.abc import AsyncGenerator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from functools import partial
from typing import Any

import strawberry
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from strawberry.asgi import GraphQL
from strawberry.extensions import ParserCache, ValidationCache
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL

from tunelytics.domain import catalog
from tunelytics.domain.demo import DemoSize, generate_demo

# Same page-size cap as tunelytics (Limits.max_page), so `first` behaves the same.
MAX_PAGE = 100
# Same bound as tunelytics.pubsub.QUEUE_SIZE: a slow subscriber loses old events.
QUEUE_SIZE = 1_000


@dataclass(slots=True)
class Catalogue:
    """The demo catalogue, indexed once at start-up for O(1) reads."""

    artists: dict[str, catalog.Artist]
    tracks: dict[str, catalog.Track]
    listener_ids: frozenset[str]
    # Each order's full list, sorted like the real server's keyset order (field, then id).
    orders: dict[str, list[catalog.Track]]


ORDER_KEYS: dict[str, Callable[[catalog.Track], Any]] = {
    "TITLE": lambda t: (t.title, t.id),
    "DURATION": lambda t: (t.duration_ms, t.id),
    "POPULARITY": lambda t: (-t.listen_count, t.id),
    "ID": lambda t: t.id,
}


def load_catalogue(size: DemoSize) -> Catalogue:
    demo = generate_demo(size)
    return Catalogue(
        artists={a.id: a for a in demo.artists},
        tracks={t.id: t for t in demo.tracks},
        listener_ids=frozenset(li.id for li in demo.listeners),
        orders={name: sorted(demo.tracks, key=key) for name, key in ORDER_KEYS.items()},
    )


class Hub:
    """In-process fan-out: one bounded queue per live subscription."""

    def __init__(self) -> None:
        self.queues: set[asyncio.Queue[Listen]] = set()

    def publish(self, listen: Listen) -> None:
        for queue in self.queues:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(listen)

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[asyncio.Queue[Listen]]:
        queue: asyncio.Queue[Listen] = asyncio.Queue(QUEUE_SIZE)
        self.queues.add(queue)
        try:
            yield queue
        finally:
            self.queues.discard(queue)


# Module state: one process serves one catalogue; set by main() before uvicorn starts.
CATALOGUE: Catalogue
HUB = Hub()
_listen_ids = itertools.count(1)


def _cursor(order: str, index: int) -> str:
    return base64.urlsafe_b64encode(f"{order}:{index}".encode()).decode()


def _index_after(order: str, after: str | None) -> int:
    if after is None:
        return 0
    cursor_order, _, index = base64.urlsafe_b64decode(after).decode().partition(":")
    if cursor_order != order:
        raise ValueError("after: the cursor belongs to another order")
    return int(index) + 1


@strawberry.type
class Artist:
    id: strawberry.ID
    name: str
    genres: list[str]
    country: str | None


@strawberry.type
class Track:
    id: strawberry.ID
    title: str
    duration_ms: int
    genres: list[str]
    released_at: datetime | None
    listen_count: int
    artist_id: strawberry.Private[str]

    @strawberry.field
    def artist(self) -> Artist | None:
        # A dict lookup stands in for the real server's DataLoader round trip.
        found = CATALOGUE.artists.get(self.artist_id)
        if found is None:
            return None
        return Artist(
            id=strawberry.ID(found.id), name=found.name, genres=found.genres, country=found.country
        )

    @classmethod
    def of(cls, track: catalog.Track) -> Track:
        return cls(
            id=strawberry.ID(track.id),
            title=track.title,
            duration_ms=track.duration_ms,
            genres=track.genres,
            released_at=track.released_at,
            listen_count=track.listen_count,
            artist_id=track.artist_id,
        )


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


@strawberry.type
class TrackEdge:
    cursor: str
    node: Track


@strawberry.type
class TrackConnection:
    edges: list[TrackEdge]
    page_info: PageInfo
    total_count: int | None

    @strawberry.field
    def nodes(self) -> list[Track]:
        return [edge.node for edge in self.edges]


@strawberry.enum
class TrackOrderBy(Enum):
    TITLE = "TITLE"
    DURATION = "DURATION"
    POPULARITY = "POPULARITY"
    ID = "ID"


@strawberry.type
class Listen:
    id: strawberry.ID
    played_at: datetime
    ms_played: int
    skipped: bool
    source: str
    track_id: strawberry.ID
    listener_id: strawberry.ID


@strawberry.input
class ListenInput:
    listener_id: strawberry.ID
    track_id: strawberry.ID
    ms_played: int
    played_at: datetime | None = None
    skipped: bool | None = None
    source: str = "other"


@strawberry.type
class RejectedItem:
    index: int
    field: str | None
    code: str
    message: str


@strawberry.type
class RecordListensPayload:
    listens: list[Listen]
    rejected: list[RejectedItem]


def tracks_page(order: str, first: int, after: str | None) -> TrackConnection:
    if not 1 <= first <= MAX_PAGE:
        raise ValueError(f"first must be between 1 and {MAX_PAGE}")
    ordered = CATALOGUE.orders[order]
    start = _index_after(order, after)
    window = ordered[start : start + first]
    edges = [
        TrackEdge(cursor=_cursor(order, start + i), node=Track.of(track))
        for i, track in enumerate(window)
    ]
    return TrackConnection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=start + first < len(ordered),
            has_previous_page=after is not None,
            start_cursor=edges[0].cursor if edges else None,
            end_cursor=edges[-1].cursor if edges else None,
        ),
        total_count=len(ordered),
    )


def _check_listen(item: ListenInput) -> str | None:
    """Why the listen would be rejected, or None; the same references the real one checks."""
    if item.listener_id not in CATALOGUE.listener_ids:
        return f"unknown listener {item.listener_id}"
    if item.track_id not in CATALOGUE.tracks:
        return f"unknown track {item.track_id}"
    return None


def record(items: list[ListenInput]) -> RecordListensPayload:
    stored: list[Listen] = []
    rejected: list[RejectedItem] = []
    now = datetime.now(UTC)
    for index, item in enumerate(items):
        reason = _check_listen(item)
        if reason is not None:
            rejected.append(RejectedItem(index=index, field=None, code="NOT_FOUND", message=reason))
            continue
        duration = CATALOGUE.tracks[item.track_id].duration_ms
        stored.append(
            Listen(
                id=strawberry.ID(f"bare-{next(_listen_ids)}"),
                played_at=item.played_at or now,
                ms_played=min(item.ms_played, duration),
                skipped=item.skipped if item.skipped is not None else item.ms_played < 30_000,
                source=item.source,
                track_id=item.track_id,
                listener_id=item.listener_id,
            )
        )
    for listen in stored:
        HUB.publish(listen)
    return RecordListensPayload(listens=stored, rejected=rejected)


@strawberry.type
class Query:
    @strawberry.field
    def tracks(
        self, order_by: TrackOrderBy = TrackOrderBy.TITLE, first: int = 20, after: str | None = None
    ) -> TrackConnection:
        return tracks_page(order_by.value, first, after)


@strawberry.type
class Mutation:
    @strawberry.mutation
    def record_listens(self, listens: list[ListenInput]) -> RecordListensPayload:
        return record(listens)


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def listens(self, track_id: strawberry.ID | None = None) -> AsyncGenerator[Listen, None]:
        with HUB.subscribe() as queue:
            while True:
                listen = await queue.get()
                if track_id is None or listen.track_id == track_id:
                    yield listen


def build_schema() -> strawberry.Schema:
    # The same caches, with the same sizes, as tunelytics.schema.root.build_schema.
    return strawberry.Schema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=[partial(ParserCache, maxsize=256), partial(ValidationCache, maxsize=256)],
    )


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def create_app() -> Starlette:
    graphql: GraphQL[None, None] = GraphQL(
        build_schema(),
        graphql_ide=None,
        subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL),
    )
    return Starlette(
        routes=[
            Route("/graphql", graphql, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", graphql),
            Route("/healthz", healthz),
        ]
    )


def parse_args() -> argparse.Namespace:
    defaults = DemoSize()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--artists", type=int, default=defaults.artists)
    parser.add_argument("--tracks", type=int, default=defaults.tracks)
    parser.add_argument("--listeners", type=int, default=defaults.listeners)
    parser.add_argument("--listens", type=int, default=defaults.listens)
    return parser.parse_args()


def main() -> None:
    global CATALOGUE
    args = parse_args()
    # The same sizes as the seeded tenant give the same catalogue, listen counts included.
    size = DemoSize(
        artists=args.artists, tracks=args.tracks, listeners=args.listeners, listens=args.listens
    )
    CATALOGUE = load_catalogue(size)
    # The same uvicorn choices as `tunelytics serve` (tunelytics/cli.py), minus logging.
    config = uvicorn.Config(
        create_app(),
        host=args.host,
        port=args.port,
        log_config=None,
        access_log=False,
        ws="websockets-sansio",
        lifespan="off",
    )
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
