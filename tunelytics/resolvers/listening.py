"""Listeners and listens: reads, batched writes and the live listens stream."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from strawberry import Info

from tunelytics import metrics
from tunelytics.domain import listening
from tunelytics.domain.auth import Permission
from tunelytics.domain.batches import BatchResult
from tunelytics.domain.catalog import Track
from tunelytics.domain.listening import Listen, Listener
from tunelytics.domain.paging import Page
from tunelytics.pubsub import listens_channel
from tunelytics.resolvers.context import Context
from tunelytics.resolvers.expiry import check_token, ends_with_token
from tunelytics.resolvers.pagination import check_batch, check_first, decode_cursor
from tunelytics.resolvers.tenancy import require_registered_tenant
from tunelytics.storage.analytics import AnalyticsRepository

CtxInfo = Info[Context, None]


async def listener(info: CtxInfo, id: str) -> Listener:
    info.context.authorize(Permission.READ)
    return await info.context.loaders.listener.require(id, "listener")


async def listens_of(
    info: CtxInfo, listener: Listener, first: int, after: str | None
) -> Page[Listen]:
    info.context.authorize(Permission.READ)  # nested reads too: see catalog.artist_of
    check_first(first, info.context.settings.limits.max_page)
    position = decode_cursor(after, "PLAYED_AT")
    return await info.context.loaders.recent_listens.load((listener.id, first, position))


async def following_of(info: CtxInfo, listener: Listener, first: int) -> list[Listener]:
    """The first `first` listeners of `listener.follows` that the tenant has. The loader is
    bound to the caller's tenant: an ID of another tenant's listener finds nothing."""
    info.context.authorize(Permission.READ)
    check_first(first, info.context.settings.limits.max_page)
    found: list[Listener] = []
    rest = listener.follows
    # One batched read of `first` IDs; another only for as many as were missing.
    while rest and len(found) < first:
        wanted, rest = rest[: first - len(found)], rest[first - len(found) :]
        loaded = await info.context.loaders.listener.load_many(wanted)
        found.extend(li for li in loaded if li is not None)
    return found


async def listener_of(info: CtxInfo, listen: Listen) -> Listener | None:
    info.context.authorize(Permission.READ)
    return await info.context.loaders.listener.load(listen.listener_id)


async def track_of(info: CtxInfo, listen: Listen) -> Track | None:
    # Nested objects are reads too (see catalog.artist_of): a recordListens payload or the
    # subscription must not show a token without READ, such as ingest, the catalogue.
    info.context.authorize(Permission.READ)
    return await info.context.loaders.track.load(listen.track_id)


async def upsert_listeners(
    info: CtxInfo, drafts: list[listening.ListenerDraft]
) -> BatchResult[Listener]:
    ctx = info.context
    principal = ctx.authorize(Permission.WRITE_LISTENS)
    check_batch(len(drafts), ctx.settings.limits.max_batch)
    await require_registered_tenant(ctx)
    result = await listening.upsert_listeners(
        principal.tenant_id, drafts, ctx.storage.listeners, datetime.now(UTC)
    )
    if result.stored:  # cached analytics of this tenant are stale now
        await AnalyticsRepository(ctx.storage.db).bump(principal.tenant_id)
    return result


def listen_event(listen: Listen) -> dict[str, Any]:
    return {
        "id": listen.id,
        "listener_id": listen.listener_id,
        "track_id": listen.track_id,
        "played_at": listen.played_at.isoformat(),
        "ms_played": listen.ms_played,
        "skipped": listen.skipped,
        "source": listen.source,
    }


def listen_from_event(event: dict[str, Any]) -> Listen:
    return Listen(**{**event, "played_at": datetime.fromisoformat(event["played_at"])})


async def record_listens(info: CtxInfo, drafts: list[listening.ListenDraft]) -> BatchResult[Listen]:
    ctx = info.context
    principal = ctx.authorize(Permission.WRITE_LISTENS)
    check_batch(len(drafts), ctx.settings.limits.max_batch)
    await require_registered_tenant(ctx)
    result = await listening.record_listens(
        principal.tenant_id,
        drafts,
        ctx.storage.tracks,
        ctx.storage.listeners,
        ctx.storage.listens,
        datetime.now(UTC),
    )
    if result.stored:  # cached analytics of this tenant are stale now
        await AnalyticsRepository(ctx.storage.db).bump(principal.tenant_id)
    await ctx.services.broadcaster.publish_many(
        listens_channel(principal.tenant_id), [listen_event(listen) for listen in result.stored]
    )
    metrics.EVENTS_PUBLISHED.labels("listen").inc(len(result.stored))
    return result


async def listen_stream(info: CtxInfo, track_id: str | None) -> AsyncIterator[Listen]:
    """Every listen stored for the caller's tenant from now on, until the token expires."""
    ctx = info.context
    principal = ctx.authorize(Permission.READ)
    await require_registered_tenant(ctx)
    gauge = metrics.ACTIVE_SUBSCRIPTIONS.labels("listens")
    gauge.inc()
    try:
        channel = listens_channel(principal.tenant_id)
        async with ctx.services.broadcaster.subscribe(channel) as events:
            with ends_with_token(principal, events):
                while True:
                    event = await events.get()
                    check_token(event)
                    if track_id is not None and event["track_id"] != track_id:
                        continue
                    ctx.fresh_loaders()
                    yield listen_from_event(event)
    finally:
        gauge.dec()
