"""Recommendations: for a listener, like a track, or for an anonymous session's tracks."""

from __future__ import annotations

import strawberry
from strawberry import Info

from tunelytics.resolvers import recommend as resolvers
from tunelytics.resolvers.context import Context
from tunelytics.schema.types import Track

CtxInfo = Info[Context, None]


@strawberry.type(description="A recommended track, how strongly, and why.")
class Recommendation:
    track: Track
    score: float
    reason: str = strawberry.field(description="A short explanation for a person.")
    because_track_id: strawberry.ID | None = strawberry.field(
        description="The track the reason refers to, if any."
    )

    @classmethod
    def of(cls, found: resolvers.Recommended) -> Recommendation:
        return cls(
            track=Track.of(found.track),
            score=found.score,
            reason=found.reason,
            because_track_id=strawberry.ID(found.because) if found.because else None,
        )


@strawberry.type
class RecommendQuery:
    @strawberry.field(description="Tracks for a listener from the active recommender.")
    async def recommendations(
        self,
        info: CtxInfo,
        listener_id: strawberry.ID,
        first: int = 10,
        diversity: float = 0.0,
        exclude_listened: bool = True,
        max_per_artist: int | None = None,
    ) -> list[Recommendation]:
        found = await resolvers.recommendations(
            info, listener_id, first, diversity, exclude_listened, max_per_artist
        )
        return [Recommendation.of(r) for r in found]

    @strawberry.field(description="Tracks like this one.")
    async def similar_tracks(
        self, info: CtxInfo, track_id: strawberry.ID, first: int = 10
    ) -> list[Recommendation]:
        return [Recommendation.of(r) for r in await resolvers.similar_tracks(info, track_id, first)]

    @strawberry.field(description="Tracks for an anonymous session that played these tracks.")
    async def recommend_for_tracks(
        self, info: CtxInfo, seed_track_ids: list[strawberry.ID], first: int = 10
    ) -> list[Recommendation]:
        found = await resolvers.recommend_for_tracks(info, list(seed_track_ids), first)
        return [Recommendation.of(r) for r in found]
