"""Input types and enums; each converts itself to the domain's draft or filter."""

from __future__ import annotations

from datetime import datetime
from enum import Enum

import strawberry

from tunelytics.domain import catalog, listening


@strawberry.enum
class TrackOrderBy(Enum):
    TITLE = "TITLE"
    DURATION = "DURATION"
    POPULARITY = "POPULARITY"
    ID = "ID"


@strawberry.input
class TrackFilter:
    artist_id: strawberry.ID | None = None
    genre: str | None = None
    title_contains: str | None = None
    min_duration_ms: int | None = None
    max_duration_ms: int | None = None

    def to_domain(self) -> catalog.TrackFilter:
        return catalog.TrackFilter(
            artist_id=self.artist_id,
            genre=self.genre,
            title_contains=self.title_contains,
            min_duration_ms=self.min_duration_ms,
            max_duration_ms=self.max_duration_ms,
        )


@strawberry.input
class ArtistInput:
    name: str
    id: strawberry.ID | None = strawberry.field(
        default=None, description="Your ID for the artist; generated when left out."
    )
    genres: list[str] | None = None
    country: str | None = strawberry.field(default=None, description="ISO 3166-1 alpha-2")

    def to_domain(self) -> catalog.ArtistDraft:
        return catalog.ArtistDraft(
            name=self.name, id=self.id, genres=self.genres, country=self.country
        )


@strawberry.input
class TrackInput:
    title: str
    artist_id: strawberry.ID
    duration_ms: int
    id: strawberry.ID | None = strawberry.field(
        default=None, description="Your ID for the track (an ISRC, say); generated when left out."
    )
    genres: list[str] | None = None
    released_at: datetime | None = None

    def to_domain(self) -> catalog.TrackDraft:
        return catalog.TrackDraft(
            title=self.title,
            artist_id=self.artist_id,
            duration_ms=self.duration_ms,
            id=self.id,
            genres=self.genres,
            released_at=self.released_at,
        )


@strawberry.input
class ListenerInput:
    id: strawberry.ID
    country: str = strawberry.field(description="ISO 3166-1 alpha-2")
    plan: str = strawberry.field(description="free, premium, family or student")
    signup_at: datetime | None = None
    follows: list[strawberry.ID] | None = strawberry.field(
        default=None,
        description=(
            "IDs of the listeners this one follows (existing ones, or ones in this batch; "
            f"at most {listening.MAX_FOLLOWS}). Replaces the stored list; left out, an "
            "update keeps it and a new listener follows nobody."
        ),
    )

    def to_domain(self) -> listening.ListenerDraft:
        return listening.ListenerDraft(
            id=self.id,
            country=self.country,
            plan=self.plan,
            signup_at=self.signup_at,
            follows=None if self.follows is None else [str(i) for i in self.follows],
        )


@strawberry.input
class ListenInput:
    listener_id: strawberry.ID
    track_id: strawberry.ID
    ms_played: int
    played_at: datetime | None = strawberry.field(default=None, description="Defaults to now.")
    skipped: bool | None = strawberry.field(
        default=None, description="Left out: a play under 30 seconds counts as skipped."
    )
    source: str = "other"

    def to_domain(self) -> listening.ListenDraft:
        return listening.ListenDraft(
            listener_id=self.listener_id,
            track_id=self.track_id,
            ms_played=self.ms_played,
            played_at=self.played_at,
            skipped=self.skipped,
            source=self.source,
        )
