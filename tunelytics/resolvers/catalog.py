"""Catalogue reads and writes: artists and tracks."""

from __future__ import annotations

from collections.abc import Awaitable

from strawberry import Info

from tunelytics.domain import catalog
from tunelytics.domain.auth import Permission
from tunelytics.domain.batches import BatchResult
from tunelytics.domain.catalog import TRACK_ORDERS, Artist, Track, TrackFilter
from tunelytics.domain.paging import Order, Page
from tunelytics.resolvers.context import Context
from tunelytics.resolvers.errors import BadUserInput
from tunelytics.resolvers.pagination import check_batch, check_first, decode_cursor
from tunelytics.resolvers.tenancy import require_registered_tenant

CtxInfo = Info[Context, None]


async def track(info: CtxInfo, id: str) -> Track:
    info.context.authorize(Permission.READ)
    return await info.context.loaders.track.require(id, "track")


async def tracks(
    info: CtxInfo,
    where: TrackFilter,
    order_name: str,
    first: int,
    after: str | None,
    with_artists: bool = False,
) -> Page[Track]:
    ctx = info.context
    principal = ctx.authorize(Permission.READ)
    check_first(first, ctx.settings.limits.max_page)
    field, descending = TRACK_ORDERS[order_name]
    position = decode_cursor(after, order_name)
    if where.title_contains is not None and len(where.title_contains) > 100:
        raise BadUserInput("titleContains: at most 100 characters")
    page = await ctx.storage.tracks.page(
        principal.tenant_id, where, Order(field, descending), position, first
    )
    for item in page.items:
        ctx.loaders.track.prime(item.id, item)
    if with_artists:
        # One batched load now lets every track's `artist` resolve without a coroutine.
        await ctx.loaders.artist.load_many(sorted({t.artist_id for t in page.items}))
    return page


async def count_tracks(info: CtxInfo, where: TrackFilter) -> int:
    principal = info.context.authorize(Permission.READ)
    return await info.context.storage.tracks.count(principal.tenant_id, where)


async def artist(info: CtxInfo, id: str) -> Artist:
    info.context.authorize(Permission.READ)
    return await info.context.loaders.artist.require(id, "artist")


async def artists(info: CtxInfo, genre: str | None, first: int, after: str | None) -> Page[Artist]:
    ctx = info.context
    principal = ctx.authorize(Permission.READ)
    check_first(first, ctx.settings.limits.max_page)
    page = await ctx.storage.artists.page(
        principal.tenant_id, decode_cursor(after, "NAME"), first, genre
    )
    for item in page.items:
        ctx.loaders.artist.prime(item.id, item)
    return page


def artist_of(info: CtxInfo, track: Track) -> Artist | Awaitable[Artist | None] | None:
    """The track's artist: at once when this request has loaded it, else a batched load."""
    # Nested objects are reads too: a mutation payload (or the subscription) must not hand
    # a token without READ, such as ingest, what it may not query.
    info.context.authorize(Permission.READ)
    return info.context.loaders.artist.get(track.artist_id)


async def tracks_of(info: CtxInfo, artist: Artist, first: int) -> list[Track]:
    info.context.authorize(Permission.READ)
    check_first(first, info.context.settings.limits.max_page)
    return (await info.context.loaders.tracks_by_artist.load(artist.id))[:first]


async def upsert_artists(info: CtxInfo, drafts: list[catalog.ArtistDraft]) -> BatchResult[Artist]:
    ctx = info.context
    principal = ctx.authorize(Permission.WRITE_CATALOG)
    check_batch(len(drafts), ctx.settings.limits.max_batch)
    await require_registered_tenant(ctx)
    return await catalog.upsert_artists(principal.tenant_id, drafts, ctx.storage.artists)


async def upsert_tracks(info: CtxInfo, drafts: list[catalog.TrackDraft]) -> BatchResult[Track]:
    ctx = info.context
    principal = ctx.authorize(Permission.WRITE_CATALOG)
    check_batch(len(drafts), ctx.settings.limits.max_batch)
    await require_registered_tenant(ctx)
    return await catalog.upsert_tracks(
        principal.tenant_id, drafts, ctx.storage.artists, ctx.storage.tracks
    )
