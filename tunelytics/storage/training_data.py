"""Bounded, projected reads of a tenant's data for training, into columnar arrays.

Only the fields a model needs are read (no bookkeeping dates, no titles), in large
batches, and listens are capped at `max_listens` of the most recent `days`: a tenant
that outgrows that trains on its recent history rather than exhausting memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np

from tunelytics.domain.models import DataWindow
from tunelytics.storage.database import Storage
from tunelytics.storage.scope import tenant_scope

if TYPE_CHECKING:
    from tunelytics.domain.recommend import Catalogue, ListeningHistory

MAX_LISTENS = 2_000_000
HISTORY_DAYS = 365
BATCH = 20_000


@dataclass
class RecommenderData:
    history: ListeningHistory
    catalogue: Catalogue
    window: DataWindow


async def read_recommender_data(
    storage: Storage,
    tenant_id: str,
    max_listens: int = MAX_LISTENS,
    days: int = HISTORY_DAYS,
    now: datetime | None = None,
) -> RecommenderData:
    from tunelytics.domain.recommend import Catalogue, ListeningHistory  # imports torch

    db = storage.db
    track_ids: list[str] = []
    artist_ids: list[str] = []
    genres: list[list[str]] = []
    durations: dict[str, int] = {}
    embeddings: list[Any] = []
    cursor = db["tracks"].find(
        tenant_scope(tenant_id),
        # `audio`, not "audio.embedding": a dotted projection comes back flat on nx-27017 (o).
        {"_id": 0, "id": 1, "artist_id": 1, "genres": 1, "duration_ms": 1, "audio": 1},
        batch_size=BATCH,
    )
    async for doc in cursor:
        track_ids.append(doc["id"])
        artist_ids.append(doc["artist_id"])
        genres.append(list(doc.get("genres") or []))
        durations[doc["id"]] = int(doc.get("duration_ms") or 0)
        embeddings.append((doc.get("audio") or {}).get("embedding"))
    artist_genres: dict[str, list[str]] = {}
    async for doc in db["artists"].find(
        tenant_scope(tenant_id), {"_id": 0, "id": 1, "genres": 1}, batch_size=BATCH
    ):
        artist_genres[doc["id"]] = list(doc.get("genres") or [])
    # A track without its own genres takes its artist's.
    genres = [g or artist_genres.get(a, []) for g, a in zip(genres, artist_ids, strict=True)]

    since = (now or datetime.now(UTC)) - timedelta(days=days)
    listeners: list[str] = []
    tracks: list[str] = []
    played: list[float] = []
    ms: list[int] = []
    skipped: list[bool] = []
    listens = (
        db["listens"]
        .find(
            tenant_scope(tenant_id, ts={"$gte": since}),
            {"_id": 0, "listener_id": 1, "track_id": 1, "ts": 1, "ms_played": 1, "skipped": 1},
            batch_size=BATCH,
        )
        .limit(max_listens)
    )
    async for doc in listens:
        listeners.append(doc["listener_id"])
        tracks.append(doc["track_id"])
        played.append(doc["ts"].timestamp())
        ms.append(doc["ms_played"])
        skipped.append(bool(doc["skipped"]))

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
    return RecommenderData(history, catalogue, window)


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
