"""Artists and tracks of each tenant's catalogue."""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from pymongo import UpdateOne
from pymongo.asynchronous.collection import AsyncCollection

from tunelytics.domain.catalog import Artist, Track, TrackFilter
from tunelytics.domain.paging import Order, Page, Position
from tunelytics.storage.dates import stored_datetime
from tunelytics.storage.keyset import keyset_page
from tunelytics.storage.scope import API_FIELDS, document_key, insert_new, keyed, tenant_scope

Document = dict[str, Any]


def _artist(doc: Document) -> Artist:
    return Artist(
        id=doc["id"], name=doc["name"], genres=doc.get("genres", []), country=doc.get("country")
    )


def _track(doc: Document) -> Track:
    return Track(
        id=doc["id"],
        title=doc["title"],
        artist_id=doc["artist_id"],
        duration_ms=doc["duration_ms"],
        genres=doc.get("genres", []),
        released_at=stored_datetime(doc.get("released_at")),
        listen_count=doc.get("listen_count", 0),
    )


class ArtistRepository:
    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self.collection = collection

    async def by_ids(self, tenant_id: str, ids: list[str]) -> dict[str, Artist]:
        cursor = self.collection.find(keyed(tenant_id, ids), API_FIELDS)
        return {doc["id"]: _artist(doc) async for doc in cursor if doc["tenant_id"] == tenant_id}

    async def page(
        self, tenant_id: str, after: Position | None, first: int, genre: str | None = None
    ) -> Page[Artist]:
        query = tenant_scope(tenant_id)
        if genre:
            query["genres"] = {"$in": [genre.strip().lower()]}
        return await keyset_page(self.collection, query, Order("name"), after, first, _artist)

    async def insert_new(self, tenant_id: str, items: list[Artist]) -> None:
        await insert_new(self.collection, tenant_id, [(i.id, _artist_document(i)) for i in items])

    async def upsert_many(self, tenant_id: str, artists: list[Artist]) -> None:
        if not artists:
            return
        now = datetime.now(UTC)
        await self.collection.bulk_write(
            [
                UpdateOne(
                    {"_id": document_key(tenant_id, a.id)},
                    {
                        "$set": {
                            "name": a.name,
                            "genres": a.genres,
                            "country": a.country,
                        },
                        # A date on both servers ($set of one: compat p).
                        "$currentDate": {"updated_at": True},
                        "$setOnInsert": {"tenant_id": tenant_id, "id": a.id, "created_at": now},
                    },
                    upsert=True,
                )
                for a in artists
            ],
            ordered=False,
        )


def _track_query(tenant_id: str, where: TrackFilter) -> Document:
    query = tenant_scope(tenant_id)
    if where.artist_id is not None:
        query["artist_id"] = {"$eq": where.artist_id}
    if where.genre is not None:
        # $in, not plain equality: see docs/mongodb-compat.md (array equality under an index).
        query["genres"] = {"$in": [where.genre.strip().lower()]}
    if where.title_contains:
        query["title"] = {"$regex": re.escape(where.title_contains), "$options": "i"}
    duration: Document = {}
    if where.min_duration_ms is not None:
        duration["$gte"] = where.min_duration_ms
    if where.max_duration_ms is not None:
        duration["$lte"] = where.max_duration_ms
    if duration:
        query["duration_ms"] = duration
    return query


class TrackRepository:
    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self.collection = collection

    async def by_ids(self, tenant_id: str, ids: list[str]) -> dict[str, Track]:
        cursor = self.collection.find(keyed(tenant_id, ids), API_FIELDS)
        return {doc["id"]: _track(doc) async for doc in cursor if doc["tenant_id"] == tenant_id}

    async def by_artist_ids(self, tenant_id: str, artist_ids: list[str]) -> dict[str, list[Track]]:
        query = tenant_scope(tenant_id, artist_id={"$in": artist_ids})
        cursor = self.collection.find(query, API_FIELDS).sort([("listen_count", -1), ("id", 1)])
        grouped: dict[str, list[Track]] = defaultdict(list)
        async for doc in cursor:
            grouped[doc["artist_id"]].append(_track(doc))
        return grouped

    async def page(
        self, tenant_id: str, where: TrackFilter, order: Order, after: Position | None, first: int
    ) -> Page[Track]:
        query = _track_query(tenant_id, where)
        return await keyset_page(self.collection, query, order, after, first, _track)

    async def count(self, tenant_id: str, where: TrackFilter) -> int:
        return await self.collection.count_documents(_track_query(tenant_id, where))

    async def insert_new(self, tenant_id: str, items: list[Track]) -> None:
        await insert_new(self.collection, tenant_id, [(i.id, _track_document(i)) for i in items])

    async def upsert_many(self, tenant_id: str, tracks: list[Track]) -> None:
        if not tracks:
            return
        now = datetime.now(UTC)
        await self.collection.bulk_write(
            [
                UpdateOne(
                    {"_id": document_key(tenant_id, t.id)},
                    {
                        "$set": {
                            "title": t.title,
                            "artist_id": t.artist_id,
                            "duration_ms": t.duration_ms,
                            "genres": t.genres,
                            "released_at": t.released_at,
                        },
                        # A date on both servers ($set of one: compat p).
                        "$currentDate": {"updated_at": True},
                        "$setOnInsert": {
                            "tenant_id": tenant_id,
                            "id": t.id,
                            "listen_count": t.listen_count,
                            "created_at": now,
                        },
                    },
                    upsert=True,
                )
                for t in tracks
            ],
            ordered=False,
        )

    async def add_listen_counts(self, tenant_id: str, counts: dict[str, int]) -> None:
        if not counts:
            return
        await self.collection.bulk_write(
            [
                UpdateOne({"_id": document_key(tenant_id, track_id)}, {"$inc": {"listen_count": n}})
                for track_id, n in counts.items()
            ],
            ordered=False,
        )


def _artist_document(a: Artist) -> Document:
    return {"id": a.id, "name": a.name, "genres": a.genres, "country": a.country}


def _track_document(t: Track) -> Document:
    return {
        "id": t.id,
        "title": t.title,
        "artist_id": t.artist_id,
        "duration_ms": t.duration_ms,
        "genres": t.genres,
        "released_at": t.released_at,
        "listen_count": t.listen_count,
    }
