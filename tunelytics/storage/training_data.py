"""Bounded, projected reads of a tenant's data for training, into columnar arrays.

Only the fields a model needs are read (no bookkeeping dates, no titles), and listens
are capped at `max_listens` of the last `days`: a tenant that outgrows that trains on
part of its history rather than exhausting memory.

The read runs beside the API's own reads, so it is made of small bounded queries (about
PAGE documents each) with a turn of the event loop between them: tracks and artists in
keyset pages on `id`, listens by ranges of listener IDs over the (tenant_id,
listener_id, seq) index, with `seq` for the time bound (an exact string range on both
servers; docs/mongodb-compat.md g). One big `find` would hold the embedded server's
database lock for the whole result (it builds it before the first batch), and every API
read would wait behind it (seconds; docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
from bson import ObjectId
from pymongo.asynchronous.collection import AsyncCollection

from tunelytics.domain.models import DataWindow
from tunelytics.storage.database import Storage
from tunelytics.storage.listening import listen_sequence
from tunelytics.storage.scope import tenant_scope

if TYPE_CHECKING:
    from tunelytics.domain.recommend import Catalogue, Following, ListeningHistory

MAX_LISTENS = 2_000_000
HISTORY_DAYS = 365
# Documents per query: on the embedded server about 20 ms of its database lock each.
PAGE = 250
Document = dict[str, Any]


@dataclass
class RecommenderData:
    history: ListeningHistory
    catalogue: Catalogue
    window: DataWindow
    following: Following | None = None  # None: nobody follows anyone


async def read_recommender_data(
    storage: Storage,
    tenant_id: str,
    max_listens: int = MAX_LISTENS,
    days: int = HISTORY_DAYS,
    now: datetime | None = None,
) -> RecommenderData:
    from tunelytics.domain.recommend import (  # imports torch
        Catalogue,
        Following,
        ListeningHistory,
    )

    db = storage.db
    track_ids: list[str] = []
    artist_ids: list[str] = []
    genres: list[list[str]] = []
    durations: dict[str, int] = {}
    embeddings: list[Any] = []
    # `audio`, not "audio.embedding": a dotted projection comes back flat on nx-27017 (o).
    track_fields = {"_id": 0, "id": 1, "artist_id": 1, "genres": 1, "duration_ms": 1, "audio": 1}
    async for page in _pages(db["tracks"], tenant_id, track_fields):
        for doc in page:
            track_ids.append(doc["id"])
            artist_ids.append(doc["artist_id"])
            genres.append(list(doc.get("genres") or []))
            durations[doc["id"]] = int(doc.get("duration_ms") or 0)
            embeddings.append((doc.get("audio") or {}).get("embedding"))
    artist_genres: dict[str, list[str]] = {}
    async for page in _pages(db["artists"], tenant_id, {"_id": 0, "id": 1, "genres": 1}):
        for doc in page:
            artist_genres[doc["id"]] = list(doc.get("genres") or [])
    # A track without its own genres takes its artist's.
    genres = [g or artist_genres.get(a, []) for g, a in zip(genres, artist_ids, strict=True)]

    since = (now or datetime.now(UTC)) - timedelta(days=days)
    listeners: list[str] = []
    tracks: list[str] = []
    played: list[float] = []
    ms: list[int] = []
    skipped: list[bool] = []
    follows: list[tuple[str, str]] = []
    since_seq = listen_sequence(since, ObjectId("0" * 24))
    async for page in _listens(db, tenant_id, since_seq, follows):
        for doc in page[: max_listens - len(played)]:
            listeners.append(doc["listener_id"])
            tracks.append(doc["track_id"])
            played.append(doc["ts"].timestamp())
            ms.append(doc["ms_played"])
            skipped.append(bool(doc["skipped"]))
        if len(played) >= max_listens:
            break

    history = ListeningHistory(
        listener_ids=np.array(listeners, dtype=str),
        track_ids=np.array(tracks, dtype=str),
        played_at=np.array(played, dtype=np.float64),
        ms_played=np.array(ms, dtype=np.float64),
        duration_ms=np.array([durations.get(t, 0) for t in tracks], dtype=np.float64),
        skipped=np.array(skipped, dtype=bool),
    )
    catalogue = Catalogue(
        track_ids=np.array(track_ids, dtype=str),
        artist_ids=np.array(artist_ids, dtype=str),
        genres=genres,
        audio_embeddings=_embeddings(embeddings),
    )
    window = DataWindow(
        start=datetime.fromtimestamp(min(played), UTC) if played else None,
        end=datetime.fromtimestamp(max(played), UTC) if played else None,
        items=len(played),
    )
    following = None
    if follows:
        follower_ids, followed_ids = zip(*follows, strict=True)
        following = Following(np.array(follower_ids, str), np.array(followed_ids, str))
    return RecommenderData(history, catalogue, window, following)


async def _pages(
    collection: AsyncCollection[Document], tenant_id: str, fields: Document, size: int = PAGE
) -> AsyncIterator[list[Document]]:
    """The tenant's documents in keyset pages on `id` (every collection read here has a
    (tenant_id, id) index), the loop's other work running between pages."""
    after: str | None = None
    while True:
        query = (
            tenant_scope(tenant_id) if after is None else tenant_scope(tenant_id, id={"$gt": after})
        )
        page = await collection.find(query, fields).sort("id", 1).limit(size).to_list()
        if page:
            yield page
        if len(page) < size:
            return
        after = page[-1]["id"]
        await asyncio.sleep(0)


async def _listens(
    db: Any, tenant_id: str, since_seq: str, follows: list[tuple[str, str]]
) -> AsyncIterator[list[Document]]:
    """The tenant's listens since `since_seq`, a range of listeners per query, sized from
    the listens per listener seen so far to come to about PAGE documents. The listeners'
    (follower, followed) pairs are appended to `follows` on the way (one read for both);
    pairs of listeners a capped read stops before have no history to train on anyway."""
    fields = {"_id": 0, "listener_id": 1, "track_id": 1, "ts": 1, "ms_played": 1, "skipped": 1}
    pending: list[str] = []
    per_query, seen_listeners, seen_listens = 8, 0, 0
    listener_fields = {"_id": 0, "id": 1, "follows": 1}
    async for page in _pages(db["listeners"], tenant_id, listener_fields, size=1_000):
        pending.extend(doc["id"] for doc in page)
        follows.extend((doc["id"], f) for doc in page for f in doc.get("follows") or ())
        while len(pending) >= per_query:
            chunk, pending = pending[:per_query], pending[per_query:]
            found = await _listens_of(db, tenant_id, chunk, since_seq, fields)
            yield found
            seen_listeners, seen_listens = seen_listeners + len(chunk), seen_listens + len(found)
            per_query = max(1, min(1_000, PAGE * seen_listeners // max(seen_listens, 1)))
            await asyncio.sleep(0)
    if pending:
        yield await _listens_of(db, tenant_id, pending, since_seq, fields)


async def _listens_of(
    db: Any, tenant_id: str, listener_ids: list[str], since_seq: str, fields: Document
) -> list[Document]:
    # Listener IDs come sorted: the chunk is one index range (listens only ever name
    # listeners of the tenant, domain/listening.py).
    query = tenant_scope(
        tenant_id,
        listener_id={"$gte": listener_ids[0], "$lte": listener_ids[-1]},
        seq={"$gte": since_seq},
    )
    docs: list[Document] = await db["listens"].find(query, fields).to_list()
    return docs


def _embeddings(rows: list[Any]) -> np.ndarray | None:
    """A (tracks, dims) matrix with zero rows for tracks without audio; None when none has."""
    sizes = {len(r) for r in rows if isinstance(r, list) and r}
    if len(sizes) != 1:
        return None
    (dims,) = sizes
    matrix = np.zeros((len(rows), dims), dtype=np.float32)
    for i, row in enumerate(rows):
        if isinstance(row, list) and len(row) == dims:
            matrix[i] = row
    return matrix
