"""Recommendations over GraphQL: checks, the served model's batched calls, track loading.

Every call goes through the tenant's served model (resolvers/models.served), so a tenant
only ever gets tracks of its own model, trained on its own catalogue; the tracks are then
resolved through the request's tenant-bound loaders, which drop anything not (or no
longer) in the tenant's catalogue.
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
from tunelytics.resolvers.models import served

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


async def _with_tracks(info: CtxInfo, found: Sequence[Recommendation] | None) -> list[Recommended]:
    if not found:
        return []
    because = sorted({r.because for r in found if r.because} - {r.track_id for r in found})
    # One batched load for the results and the tracks their reasons name.
    tracks, _ = await asyncio.gather(
        info.context.loaders.track.load_many([r.track_id for r in found]),
        info.context.loaders.track.load_many(because),
    )
    named = info.context.loaders.track.loaded
    return [
        Recommended(track, r.score, _titled(r, named), r.because)
        for r, track in zip(found, tracks, strict=True)
        if track is not None
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
    model = await served(ctx, principal.tenant_id, ModelKind.RECOMMENDER)
    listener, found = await asyncio.gather(
        ctx.loaders.listener.load(listener_id),
        model.call(
            "recommend",
            listener_id,
            k=first,
            exclude_listened=exclude_listened,
            diversity=diversity,
            max_per_artist=max_per_artist,
        ),
    )
    if listener is None:
        raise NotFound(f"no listener {listener_id}", id=listener_id)
    if found is None:
        page = await ctx.loaders.recent_listens.load((listener_id, COLD_START_SEEDS, None))
        seeds = tuple(dict.fromkeys(listen.track_id for listen in page.items))
        found = await model.call("recommend_for_tracks", seeds, k=first)
    return await _with_tracks(info, found)


async def similar_tracks(info: CtxInfo, track_id: str, first: int) -> list[Recommended]:
    ctx = info.context
    principal = ctx.authorize(Permission.READ)
    _check(first)
    model = await served(ctx, principal.tenant_id, ModelKind.RECOMMENDER)
    track, found = await asyncio.gather(
        ctx.loaders.track.load(track_id), model.call("similar_tracks", track_id, k=first)
    )
    if track is None:
        raise NotFound(f"no track {track_id}", id=track_id)
    return await _with_tracks(info, found)


async def recommend_for_tracks(
    info: CtxInfo, seed_track_ids: list[str], first: int
) -> list[Recommended]:
    ctx = info.context
    principal = ctx.authorize(Permission.READ)
    _check(first)
    if len(seed_track_ids) > MAX_SEEDS:
        raise BadUserInput(f"at most {MAX_SEEDS} seed tracks", argument="seedTrackIds")
    seeds = tuple(dict.fromkeys(seed_track_ids))
    model = await served(ctx, principal.tenant_id, ModelKind.RECOMMENDER)
    known = await ctx.loaders.track.load_many(list(seeds))
    missing = [s for s, t in zip(seeds, known, strict=True) if t is None]
    if missing:
        raise NotFound(f"no track {', '.join(missing[:5])}", ids=missing[:20])
    found = await model.call("recommend_for_tracks", seeds, k=first)
    return await _with_tracks(info, found)
