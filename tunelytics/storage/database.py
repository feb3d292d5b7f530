"""The MongoDB connection, its indexes, and the bundle of repositories built on it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.monitoring import CommandListener

from tunelytics.storage.alerts import ALERT_INDEXES
from tunelytics.storage.audio import INDEXES as AUDIO_INDEXES
from tunelytics.storage.catalog import ArtistRepository, TrackRepository
from tunelytics.storage.listening import ListenerRepository, ListenRepository
from tunelytics.storage.models import ArtifactStore, JobRepository, ModelRepository
from tunelytics.storage.monitoring import MONITORING_INDEXES, migrate_point_documents
from tunelytics.storage.tenants import TenantRepository

Document = dict[str, Any]

# Every index starts with tenant_id: each query is scoped to one tenant first.
INDEXES: dict[str, list[IndexModel]] = {
    "artists": [
        IndexModel([("tenant_id", ASCENDING), ("id", ASCENDING)], unique=True),
        IndexModel([("tenant_id", ASCENDING), ("name", ASCENDING), ("id", ASCENDING)]),
    ],
    "tracks": [
        IndexModel([("tenant_id", ASCENDING), ("id", ASCENDING)], unique=True),
        IndexModel([("tenant_id", ASCENDING), ("artist_id", ASCENDING)]),
        IndexModel([("tenant_id", ASCENDING), ("title", ASCENDING), ("id", ASCENDING)]),
        IndexModel([("tenant_id", ASCENDING), ("listen_count", DESCENDING), ("id", ASCENDING)]),
        IndexModel([("tenant_id", ASCENDING), ("duration_ms", ASCENDING), ("id", ASCENDING)]),
        IndexModel([("tenant_id", ASCENDING), ("genres", ASCENDING)]),
    ],
    "listeners": [
        IndexModel([("tenant_id", ASCENDING), ("id", ASCENDING)], unique=True),
    ],
    "listens": [
        # Only the access paths the API serves: each index slows the biggest write path.
        IndexModel([("tenant_id", ASCENDING), ("listener_id", ASCENDING), ("seq", DESCENDING)]),
    ],
    "models": [
        IndexModel([("tenant_id", ASCENDING), ("kind", ASCENDING), ("version", DESCENDING)]),
        IndexModel(
            [
                ("tenant_id", ASCENDING),
                ("kind", ASCENDING),
                ("status", ASCENDING),
                ("activated_at", DESCENDING),
            ]
        ),
    ],
    "jobs": [
        IndexModel([("tenant_id", ASCENDING), ("created_at", DESCENDING)]),
    ],
    "predictions": [
        IndexModel([("tenant_id", ASCENDING), ("created_at", DESCENDING)]),
        IndexModel(
            [
                ("tenant_id", ASCENDING),
                ("kind", ASCENDING),
                ("subject", ASCENDING),
                ("created_at", DESCENDING),
            ]
        ),
    ],
    **AUDIO_INDEXES,
    **MONITORING_INDEXES,
    **ALERT_INDEXES,
}


@dataclass(slots=True)
class Storage:
    client: AsyncMongoClient[Document]
    db: AsyncDatabase[Document]
    tenants: TenantRepository
    artists: ArtistRepository
    tracks: TrackRepository
    listeners: ListenerRepository
    listens: ListenRepository
    models: ModelRepository
    jobs: JobRepository
    artifacts: ArtifactStore

    async def ensure_indexes(self) -> None:
        for collection, indexes in INDEXES.items():
            await self.db[collection].create_indexes(indexes)
        await migrate_point_documents(self.db)

    async def ping(self) -> None:
        await self.client.admin.command("ping")

    async def close(self) -> None:
        await self.client.close()


def connect(
    url: str,
    database: str,
    listeners: list[CommandListener] | None = None,
    timeout_ms: int = 5_000,
) -> Storage:
    """Open a client (lazily: nothing is sent until the first command)."""
    client: AsyncMongoClient[Document] = AsyncMongoClient(
        url,
        tz_aware=True,
        event_listeners=listeners or [],
        serverSelectionTimeoutMS=timeout_ms,
        appname="tunelytics",
    )
    return storage_on(client, database)


def storage_on(client: AsyncMongoClient[Document], database: str) -> Storage:
    db = client[database]
    return Storage(
        client=client,
        db=db,
        tenants=TenantRepository(db["tenants"]),
        artists=ArtistRepository(db["artists"]),
        tracks=TrackRepository(db["tracks"]),
        listeners=ListenerRepository(db["listeners"]),
        listens=ListenRepository(db["listens"]),
        models=ModelRepository(db["models"], db["counters"]),
        jobs=JobRepository(db["jobs"]),
        artifacts=ArtifactStore(db),
    )
