"""Per-request DataLoaders: one class per access path, results aligned with keys.

A loader lives for one request (one subscription event), so its cache never serves
stale data across requests, and it is bound to one tenant, so it cannot mix tenants.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from functools import cached_property
from typing import Generic, TypeVar

from aiodataloader import DataLoader

from tunelytics.domain.catalog import Artist, Track
from tunelytics.domain.listening import Listen, Listener
from tunelytics.domain.paging import Page, Position
from tunelytics.domain.tenancy import Tenant
from tunelytics.resolvers.errors import NotFound
from tunelytics.storage import Storage

K = TypeVar("K")
V = TypeVar("V")
T = TypeVar("T")


class _TenantLoader(DataLoader[K, V], Generic[K, V]):
    def __init__(self, storage: Storage, tenant_id: str) -> None:
        super().__init__()
        self.storage = storage
        self.tenant_id = tenant_id
        # What this request has loaded so far, for resolvers that can then answer without
        # a coroutine (a page of 50 tracks would otherwise await 50 cached futures).
        self.loaded: dict[K, V] = {}

    def get(self, key: K) -> V | Awaitable[V]:
        """The value if already loaded in this request, else the (batched) load."""
        if key in self.loaded:
            return self.loaded[key]
        return self.load(key)

    async def require(self: _TenantLoader[str, T | None], key: str, what: str) -> T:
        """The value, or NOT_FOUND naming what was looked for."""
        found = await self.load(key)
        if found is None:
            raise NotFound(f"no {what} {key}", id=key)
        return found

    def prime(self, key: K, value: V) -> _TenantLoader[K, V]:
        self.loaded.setdefault(key, value)
        super().prime(key, value)
        return self

    def remember(self, keys: Sequence[K], values: list[V]) -> list[V]:
        self.loaded.update(zip(keys, values, strict=True))
        return values


class TrackLoader(_TenantLoader[str, Track | None]):
    async def batch_load_fn(self, ids: list[str]) -> list[Track | None]:
        found = await self.storage.tracks.by_ids(self.tenant_id, list(ids))
        return self.remember(ids, [found.get(i) for i in ids])


class ArtistLoader(_TenantLoader[str, Artist | None]):
    async def batch_load_fn(self, ids: list[str]) -> list[Artist | None]:
        found = await self.storage.artists.by_ids(self.tenant_id, list(ids))
        return self.remember(ids, [found.get(i) for i in ids])


class ListenerLoader(_TenantLoader[str, Listener | None]):
    async def batch_load_fn(self, ids: list[str]) -> list[Listener | None]:
        found = await self.storage.listeners.by_ids(self.tenant_id, list(ids))
        return self.remember(ids, [found.get(i) for i in ids])


class TracksByArtistLoader(_TenantLoader[str, list[Track]]):
    """An artist's tracks, most played first."""

    async def batch_load_fn(self, artist_ids: list[str]) -> list[list[Track]]:
        grouped = await self.storage.tracks.by_artist_ids(self.tenant_id, list(artist_ids))
        return [grouped.get(i, []) for i in artist_ids]


class TenantLoader(DataLoader[str, Tenant | None]):
    def __init__(self, storage: Storage) -> None:
        super().__init__()
        self.storage = storage

    async def batch_load_fn(self, ids: list[str]) -> list[Tenant | None]:
        return [await self.storage.tenants.get(i) for i in ids]


class Loaders:
    """A request's loaders, each made when the request first uses it (most use one or
    two: building all six was ~2% of a read's server CPU)."""

    def __init__(self, storage: Storage, tenant_id: str) -> None:
        self.storage = storage
        self.tenant_id = tenant_id

    @cached_property
    def track(self) -> TrackLoader:
        return TrackLoader(self.storage, self.tenant_id)

    @cached_property
    def artist(self) -> ArtistLoader:
        return ArtistLoader(self.storage, self.tenant_id)

    @cached_property
    def listener(self) -> ListenerLoader:
        return ListenerLoader(self.storage, self.tenant_id)

    @cached_property
    def tracks_by_artist(self) -> TracksByArtistLoader:
        return TracksByArtistLoader(self.storage, self.tenant_id)

    @cached_property
    def recent_listens(self) -> RecentListensLoader:
        return RecentListensLoader(self.storage, self.tenant_id)

    @cached_property
    def tenant(self) -> TenantLoader:
        return TenantLoader(self.storage)


ListensKey = tuple[str, int, Position | None]


class RecentListensLoader(_TenantLoader[ListensKey, Page[Listen]]):
    """A listener's listens, newest first; key: (listener id, page size, position after)."""

    async def batch_load_fn(self, keys: list[ListensKey]) -> list[Page[Listen]]:
        # Each listener's page is its own index range scan; run them together.
        return list(
            await asyncio.gather(
                *(
                    self.storage.listens.recent_by_listener(self.tenant_id, lid, after, first)
                    for lid, first, after in keys
                )
            )
        )
