"""Object types. Each wraps a domain entity; nested fields resolve through loaders."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable
from datetime import datetime
from enum import Enum
from typing import cast

import strawberry
from strawberry import Info

from tunelytics.domain import catalog, listening
from tunelytics.domain.auth import Permission, Principal
from tunelytics.domain.batches import Rejection
from tunelytics.domain.tenancy import Tenant as TenantEntity
from tunelytics.resolvers import catalog as catalog_resolvers
from tunelytics.resolvers import listening as listening_resolvers
from tunelytics.resolvers.context import Context
from tunelytics.schema.connections import Connection, connection

CtxInfo = Info[Context, None]


@strawberry.enum
class Role(Enum):
    VIEWER = "viewer"
    ANALYST = "analyst"
    ADMIN = "admin"
    INGEST = "ingest"


@strawberry.type
class Tenant:
    id: strawberry.ID
    name: str
    timezone: str
    retention_days: int

    @classmethod
    def of(cls, tenant: TenantEntity) -> Tenant:
        return cls(
            id=strawberry.ID(tenant.id),
            name=tenant.name,
            timezone=tenant.timezone,
            retention_days=tenant.retention_days,
        )


@strawberry.type(description="The authenticated caller.")
class Viewer:
    subject: str
    roles: list[Role]
    tenant_id: strawberry.ID
    token_expires_at: datetime | None

    @classmethod
    def of(cls, principal: Principal) -> Viewer:
        return cls(
            subject=principal.subject,
            roles=sorted((Role(r.value) for r in principal.roles), key=lambda r: r.value),
            tenant_id=strawberry.ID(principal.tenant_id),
            token_expires_at=principal.expires_at,
        )

    @strawberry.field
    async def tenant(self, info: CtxInfo) -> Tenant | None:
        # The tenant's details are a read, as in Query.tenant; who you are is not.
        info.context.authorize(Permission.READ)
        found = await info.context.loaders.tenant.load(self.tenant_id)
        return Tenant.of(found) if found else None


@strawberry.type
class Artist:
    id: strawberry.ID
    name: str
    genres: list[str]
    country: str | None
    entity: strawberry.Private[catalog.Artist]

    @classmethod
    def of(cls, artist: catalog.Artist) -> Artist:
        return cls(
            id=strawberry.ID(artist.id),
            name=artist.name,
            genres=artist.genres,
            country=artist.country,
            entity=artist,
        )

    @strawberry.field(description="The artist's tracks, most played first.")
    async def tracks(self, info: CtxInfo, first: int = 20) -> list[Track]:
        found = await catalog_resolvers.tracks_of(info, self.entity, first)
        return [Track.of(t) for t in found]


@strawberry.type
class Track:
    id: strawberry.ID
    title: str
    duration_ms: int
    genres: list[str]
    released_at: datetime | None
    listen_count: int = strawberry.field(description="Listens recorded for this track.")
    entity: strawberry.Private[catalog.Track]

    @classmethod
    def of(cls, track: catalog.Track) -> Track:
        return cls(
            id=strawberry.ID(track.id),
            title=track.title,
            duration_ms=track.duration_ms,
            genres=track.genres,
            released_at=track.released_at,
            listen_count=track.listen_count,
            entity=track,
        )

    @strawberry.field
    def artist(self, info: CtxInfo) -> Artist | None:
        # Synchronous when the artist is already loaded (a page of tracks loads them all at
        # once): graphql-core then handles no coroutine per track. Else an awaitable.
        found = catalog_resolvers.artist_of(info, self.entity)
        if inspect.isawaitable(found):
            return cast("Artist | None", _artist_later(found))
        return Artist.of(found) if found else None


async def _artist_later(pending: Awaitable[catalog.Artist | None]) -> Artist | None:
    found = await pending
    return Artist.of(found) if found else None


@strawberry.type
class Listener:
    id: strawberry.ID
    country: str
    plan: str
    signup_at: datetime
    entity: strawberry.Private[listening.Listener]

    @classmethod
    def of(cls, listener: listening.Listener) -> Listener:
        return cls(
            id=strawberry.ID(listener.id),
            country=listener.country,
            plan=listener.plan,
            signup_at=listener.signup_at,
            entity=listener,
        )

    @strawberry.field(description="Listens, newest first.")
    async def listens(
        self, info: CtxInfo, first: int = 20, after: str | None = None
    ) -> Connection[Listen]:
        page = await listening_resolvers.listens_of(info, self.entity, first, after)
        return connection(page, "PLAYED_AT", Listen.of, has_previous=after is not None)

    @strawberry.field(
        description="Listeners this one follows, in the order of its list (ones since "
        "deleted left out)."
    )
    async def following(self, info: CtxInfo, first: int = 20) -> list[Listener]:
        found = await listening_resolvers.following_of(info, self.entity, first)
        return [Listener.of(li) for li in found]


@strawberry.type
class Listen:
    id: strawberry.ID
    played_at: datetime
    ms_played: int
    skipped: bool
    source: str
    track_id: strawberry.ID
    listener_id: strawberry.ID
    entity: strawberry.Private[listening.Listen]

    @classmethod
    def of(cls, listen: listening.Listen) -> Listen:
        return cls(
            id=strawberry.ID(listen.id),
            played_at=listen.played_at,
            ms_played=listen.ms_played,
            skipped=listen.skipped,
            source=listen.source,
            track_id=strawberry.ID(listen.track_id),
            listener_id=strawberry.ID(listen.listener_id),
            entity=listen,
        )

    @strawberry.field
    async def track(self, info: CtxInfo) -> Track | None:
        found = await listening_resolvers.track_of(info, self.entity)
        return Track.of(found) if found else None

    @strawberry.field
    async def listener(self, info: CtxInfo) -> Listener | None:
        found = await listening_resolvers.listener_of(info, self.entity)
        return Listener.of(found) if found else None


@strawberry.type(description="One item of a batch that was not stored, and why.")
class RejectedItem:
    index: int = strawberry.field(description="Position of the item in the input list.")
    field: str | None
    code: str = strawberry.field(description="BAD_USER_INPUT, or NOT_FOUND for unknown IDs.")
    message: str

    @classmethod
    def of(cls, rejection: Rejection) -> RejectedItem:
        return cls(
            index=rejection.index,
            field=rejection.field,
            code="NOT_FOUND" if rejection.unknown_reference else "BAD_USER_INPUT",
            message=rejection.reason,
        )


@strawberry.type
class UpsertArtistsPayload:
    artists: list[Artist]
    rejected: list[RejectedItem]


@strawberry.type
class UpsertTracksPayload:
    tracks: list[Track]
    rejected: list[RejectedItem]


@strawberry.type
class UpsertListenersPayload:
    listeners: list[Listener]
    rejected: list[RejectedItem]


@strawberry.type
class RecordListensPayload:
    listens: list[Listen]
    rejected: list[RejectedItem]
