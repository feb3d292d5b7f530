"""Listeners and their listens (append-only, the big collection)."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo import UpdateOne
from pymongo.asynchronous.collection import AsyncCollection

from tunelytics.domain.listening import Listen, Listener
from tunelytics.domain.paging import Page, Position
from tunelytics.storage.scope import API_FIELDS, document_key, insert_new, keyed, tenant_scope

Document = dict[str, Any]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _listener(doc: Document) -> Listener:
    return Listener(
        id=doc["id"],
        country=doc["country"],
        plan=doc["plan"],
        signup_at=doc["signup_at"],
        follows=list(doc.get("follows") or []),  # documents from before follows had none
    )


def _listen(doc: Document) -> Listen:
    return Listen(
        id=str(doc["_id"]),
        listener_id=doc["listener_id"],
        track_id=doc["track_id"],
        played_at=doc["ts"],
        ms_played=doc["ms_played"],
        skipped=doc["skipped"],
        source=doc.get("source", "other"),
    )


def listen_sequence(played_at: datetime, listen_id: ObjectId) -> str:
    """A string that sorts like (played_at, id): keyset pages on it are one range scan.

    A two-field keyset needs an `$or`, which the embedded server answers by scanning the
    whole collection, and it compares dates only to the second (docs/mongodb-compat.md).
    """
    millis = (played_at - EPOCH) // timedelta(milliseconds=1)
    return f"{millis:013d}{listen_id}"


def listen_document(tenant_id: str, listen: Listen) -> Document:
    oid = ObjectId()
    return {
        "_id": oid,
        "seq": listen_sequence(listen.played_at, oid),
        "tenant_id": tenant_id,
        "listener_id": listen.listener_id,
        "track_id": listen.track_id,
        "ts": listen.played_at,
        "ms_played": listen.ms_played,
        "skipped": listen.skipped,
        "source": listen.source,
    }


class ListenerRepository:
    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self.collection = collection

    async def by_ids(self, tenant_id: str, ids: list[str]) -> dict[str, Listener]:
        cursor = self.collection.find(keyed(tenant_id, ids), API_FIELDS)
        return {doc["id"]: _listener(doc) async for doc in cursor if doc["tenant_id"] == tenant_id}

    async def existing_ids(self, tenant_id: str, ids: list[str]) -> set[str]:
        """Which of these IDs are the tenant's listeners (a projected read: no follows)."""
        if not ids:
            return set()
        cursor = self.collection.find(keyed(tenant_id, ids), {"_id": 0, "id": 1, "tenant_id": 1})
        return {doc["id"] async for doc in cursor if doc["tenant_id"] == tenant_id}

    async def insert_new(self, tenant_id: str, items: list[Listener]) -> None:
        await insert_new(self.collection, tenant_id, [(i.id, _listener_document(i)) for i in items])

    async def upsert_many(
        self, tenant_id: str, listeners: list[Listener], keep_follows: Collection[str] = ()
    ) -> None:
        """Insert or update; a listener named in `keep_follows` keeps its stored follows
        (a new one starts with none), the others' are replaced."""
        if not listeners:
            return
        now = datetime.now(UTC)
        writes = []
        for li in listeners:
            fields: Document = {"country": li.country, "plan": li.plan}
            on_insert: Document = {
                "tenant_id": tenant_id,
                "id": li.id,
                "signup_at": li.signup_at,
                "created_at": now,
            }
            if li.id in keep_follows:
                on_insert["follows"] = li.follows
            else:
                fields["follows"] = li.follows
            update = {
                "$set": fields,
                # A date on both servers ($set of one: compat p).
                "$currentDate": {"updated_at": True},
                "$setOnInsert": on_insert,
            }
            writes.append(UpdateOne({"_id": document_key(tenant_id, li.id)}, update, upsert=True))
        await self.collection.bulk_write(writes, ordered=False)


class ListenRepository:
    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self.collection = collection

    async def insert_many(self, tenant_id: str, listens: list[Listen]) -> list[Listen]:
        """Store the listens and return them with their new ids."""
        if not listens:
            return []
        docs = [listen_document(tenant_id, listen) for listen in listens]
        await self.collection.insert_many(docs, ordered=False)
        return [_listen(doc) for doc in docs]

    async def recent_by_listener(
        self, tenant_id: str, listener_id: str, before: Position | None, first: int
    ) -> Page[Listen]:
        """Newest first. `before` is the position (sequence, id) of the last listen seen."""
        query = tenant_scope(tenant_id, listener_id={"$eq": listener_id})
        if before is not None:
            query["seq"] = {"$lt": str(before[0])}
        docs = await self.collection.find(query).sort("seq", -1).limit(first + 1).to_list()
        page = docs[:first]
        return Page(
            items=[_listen(doc) for doc in page],
            positions=[(doc["seq"], str(doc["_id"])) for doc in page],
            has_next=len(docs) > first,
        )


def _listener_document(li: Listener) -> Document:
    return {
        "id": li.id,
        "country": li.country,
        "plan": li.plan,
        "signup_at": li.signup_at,
        "follows": li.follows,
    }
