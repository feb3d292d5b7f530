"""Recommendations over GraphQL: checks, the served model's batched calls, track loading.

Every call goes through the tenant's served model (resolvers/models.served), so a tenant
only ever gets tracks of its own model, trained on its own catalogue; the tracks are then
read through the tenant's coalesced track lookup (services/serving: the requests one
micro-batch answers read their tracks in one query) and primed into the request's
loaders; anything not (or no longer) in the tenant's catalogue is dropped.

Hot path: a listener the served model knows existed when it was trained (listeners are
never deleted), so only a listener the model does not know is looked up in MongoDB (to
tell an unknown ID from one new since training).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from strawberry import Info

from tunelytics.domain.auth import Permission
from tunelytics.domain.catalog import Track
from tunelytics.domain.models import ModelKind
from tunelytics.resolvers.context import Context
from tunelytics.resolvers.errors import BadUserInput, NotFound
from tunelytics.resolvers.models import model_server, served

if TYPE_CHECKING:
    from tunelytics.domain.recommend import Recommendation

CtxInfo = Info[Context, None]
MAX_RESULTS = 100
MAX_SEEDS = 50
# A listener the model has not seen (new since training) gets results from this many of
# their recent listens, or the popular side when they have none.
COLD_START_SEEDS = 20


@dataclass(frozen=True, slots=True)
class Recommended:
    track: Track
    score: float
    reason: str
    because: str | None


def _check(first: int, diversity: float = 0.0, max_per_artist: int | None = None) -> None:
    if not 1 <= first <= MAX_RESULTS:
        raise BadUserInput(f"first must be between 1 and {MAX_RESULTS}", argument="first")
    if not 0.0 <= diversity <= 1.0:
        raise BadUserInput("diversity must be between 0 and 1", argument="diversity")
    if max_per_artist is not None and not 1 <= max_per_artist <= MAX_RESULTS:
        raise BadUserInput(
            f"maxPerArtist must be between 1 and {MAX_RESULTS}", argument="maxPerArtist"
        )


async def _tracks(ctx: Context, tenant_id: str, ids: Sequence[str]) -> dict[str, Track | None]:
    """The tenant's tracks by ID, read together with concurrent requests' and primed into
    this request's loader (nested fields and later reads of this request reuse them)."""
    storage = ctx.storage

    async def fetch(keys: list[str]) -> dict[str, Track]:
        return await storage.tracks.by_ids(tenant_id, keys)

    lookup = model_server(ctx).lookup(tenant_id, "tracks", fetch)
    wanted = list(dict.fromkeys(ids))
    found = dict(zip(wanted, await lookup.get_many(wanted), strict=True))
    loader = ctx.loaders.track
    for track_id, track in found.items():
        loader.prime(track_id, track)
    return found


async def _with_tracks(
    ctx: Context, tenant_id: str, found: Sequence[Recommendation] | None
) -> list[Recommended]:
    if not found:
        return []
    # One read for the results and the tracks their reasons name.
    named = await _tracks(
        ctx, tenant_id, [r.track_id for r in found] + [r.because for r in found if r.because]
    )
    return [
        Recommended(track, r.score, _titled(r, named), r.because)
        for r in found
        if (track := named.get(r.track_id)) is not None
    ]


def _titled(found: Recommendation, tracks: dict[str, Track | None]) -> str:
    """The reason with the track it names shown by title ("because you played Blue Hour")."""
    named = tracks.get(found.because) if found.because else None
    if named is None or found.because is None:
        return found.reason
    return found.reason.replace(found.because, f"“{named.title}”")


async def recommendations(
    info: CtxInfo,
    listener_id: str,
    first: int,
    diversity: float,
    exclude_listened: bool,
    max_per_artist: int | None,
) -> list[Recommended]:
    ctx = info.context
    principal = ctx.authorize(Permission.READ)
    _check(first, diversity, max_per_artist)
    tenant = principal.tenant_id
    model = await served(ctx, tenant, ModelKind.RECOMMENDER)
    found = await model.call(
        "recommend",
        listener_id,
        k=first,
        exclude_listened=exclude_listened,
        diversity=diversity,
        max_per_artist=max_per_artist,
    )
    if found is None:
        # Not in the model: an unknown ID, or a listener new since training.
        if await ctx.loaders.listener.load(listener_id) is None:
            raise NotFound(f"no listener {listener_id}", id=listener_id)
        page = await ctx.loaders.recent_listens.load((listener_id, COLD_START_SEEDS, None))
        seeds = tuple(dict.fromkeys(listen.track_id for listen in page.items))
        found = await model.call("recommend_for_tracks", seeds, k=first)
    return await _with_tracks(ctx, tenant, found)


async def similar_tracks(info: CtxInfo, track_id: str, first: int) -> list[Recommended]:
    ctx = info.context
    principal = ctx.authorize(Permission.READ)
    _check(first)
    tenant = principal.tenant_id
    model = await served(ctx, tenant, ModelKind.RECOMMENDER)
    known, found = await asyncio.gather(
        _tracks(ctx, tenant, [track_id]), model.call("similar_tracks", track_id, k=first)
    )
    if known[track_id] is None:
        raise NotFound(f"no track {track_id}", id=track_id)
    return await _with_tracks(ctx, tenant, found)


async def recommend_for_tracks(
    info: CtxInfo, seed_track_ids: list[str], first: int
) -> list[Recommended]:
    ctx = info.context
    principal = ctx.authorize(Permission.READ)
    _check(first)
    if len(seed_track_ids) > MAX_SEEDS:
        raise BadUserInput(f"at most {MAX_SEEDS} seed tracks", argument="seedTrackIds")
    seeds = tuple(dict.fromkeys(seed_track_ids))
    tenant = principal.tenant_id
    model = await served(ctx, tenant, ModelKind.RECOMMENDER)
    known = await _tracks(ctx, tenant, seeds)
    missing = [s for s in seeds if known[s] is None]
    if missing:
        raise NotFound(f"no track {', '.join(missing[:5])}", ids=missing[:20])
    found = await model.call("recommend_for_tracks", seeds, k=first)
    return await _with_tracks(ctx, tenant, found)
