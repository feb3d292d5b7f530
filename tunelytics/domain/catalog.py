"""Artists and tracks, and the rules a catalogue entry must follow."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from tunelytics.domain.batches import BatchResult, Rejection, sort_out
from tunelytics.domain.errors import InvalidItem

MAX_TITLE_LENGTH = 300
MAX_GENRES = 10
MAX_GENRE_LENGTH = 40
MAX_DURATION_MS = 6 * 60 * 60 * 1000  # six hours covers the longest live recordings
# Checked with fullmatch: a "$" anchor would also accept a trailing newline ("tr-1\n").
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")


@dataclass(slots=True)
class Artist:
    id: str
    name: str
    genres: list[str] = field(default_factory=list)
    country: str | None = None


@dataclass(slots=True)
class Track:
    id: str
    title: str
    artist_id: str
    duration_ms: int
    genres: list[str] = field(default_factory=list)
    released_at: datetime | None = None
    listen_count: int = 0


def check_id(value: Any, what: str) -> str:
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise InvalidItem(
            what, "must be 1-128 characters of letters, digits and _ . : - (no leading symbol)"
        )
    return value


def clean_genres(genres: list[str] | None) -> list[str]:
    """Genres are lower-case tags; duplicates collapse, order is kept."""
    if genres is None:
        return []
    if len(genres) > MAX_GENRES:
        raise InvalidItem("genres", f"at most {MAX_GENRES} genres")
    cleaned: list[str] = []
    for genre in genres:
        tag = genre.strip().lower()
        if not tag or len(tag) > MAX_GENRE_LENGTH:
            raise InvalidItem("genres", f"each genre must be 1-{MAX_GENRE_LENGTH} characters")
        if tag not in cleaned:
            cleaned.append(tag)
    return cleaned


def clean_name(value: str, what: str) -> str:
    name = value.strip()
    if not name:
        raise InvalidItem(what, "must not be empty")
    if len(name) > MAX_TITLE_LENGTH:
        raise InvalidItem(what, f"at most {MAX_TITLE_LENGTH} characters")
    return name


def new_artist(
    id: str, name: str, genres: list[str] | None = None, country: str | None = None
) -> Artist:
    """Validate one artist; raises InvalidItem naming the offending field."""
    if country is not None and not re.fullmatch(r"[A-Z]{2}", country):
        raise InvalidItem("country", "must be an ISO 3166-1 alpha-2 code such as SE")
    return Artist(
        id=check_id(id, "id"),
        name=clean_name(name, "name"),
        genres=clean_genres(genres),
        country=country,
    )


def new_track(
    id: str,
    title: str,
    artist_id: str,
    duration_ms: int,
    genres: list[str] | None = None,
    released_at: datetime | None = None,
) -> Track:
    """Validate one track; raises InvalidItem naming the offending field."""
    if not 0 < duration_ms <= MAX_DURATION_MS:
        raise InvalidItem("durationMs", f"must be between 1 and {MAX_DURATION_MS}")
    return Track(
        id=check_id(id, "id"),
        title=clean_name(title, "title"),
        artist_id=check_id(artist_id, "artistId"),
        duration_ms=duration_ms,
        genres=clean_genres(genres),
        released_at=released_at,
    )


@dataclass(frozen=True, slots=True)
class TrackFilter:
    artist_id: str | None = None
    genre: str | None = None
    title_contains: str | None = None
    min_duration_ms: int | None = None
    max_duration_ms: int | None = None


# The orders a track list can take; each is backed by an index in storage.
TRACK_ORDERS = {
    "TITLE": ("title", False),
    "DURATION": ("duration_ms", False),
    "POPULARITY": ("listen_count", True),
    "ID": ("id", False),
}


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(8)}"


@dataclass(frozen=True, slots=True)
class ArtistDraft:
    name: str
    id: str | None = None
    genres: list[str] | None = None
    country: str | None = None


@dataclass(frozen=True, slots=True)
class TrackDraft:
    title: str
    artist_id: str
    duration_ms: int
    id: str | None = None
    genres: list[str] | None = None
    released_at: datetime | None = None


class ArtistStore(Protocol):
    async def by_ids(self, tenant_id: str, ids: list[str]) -> dict[str, Artist]: ...
    async def upsert_many(self, tenant_id: str, artists: list[Artist]) -> None: ...


class TrackStore(Protocol):
    async def by_ids(self, tenant_id: str, ids: list[str]) -> dict[str, Track]: ...
    async def upsert_many(self, tenant_id: str, tracks: list[Track]) -> None: ...


async def upsert_artists(
    tenant_id: str, drafts: list[ArtistDraft], artists: ArtistStore
) -> BatchResult[Artist]:
    accepted, rejected = sort_out(
        drafts,
        lambda d: new_artist(d.id or new_id("ar"), d.name, d.genres, d.country),
        key=lambda a: a.id,
    )
    valid = [artist for _, artist in accepted]
    await artists.upsert_many(tenant_id, valid)
    return BatchResult(stored=valid, rejected=rejected)


async def upsert_tracks(
    tenant_id: str, drafts: list[TrackDraft], artists: ArtistStore, tracks: TrackStore
) -> BatchResult[Track]:
    accepted, rejected = sort_out(
        drafts,
        lambda d: new_track(
            d.id or new_id("tr"), d.title, d.artist_id, d.duration_ms, d.genres, d.released_at
        ),
        key=lambda t: t.id,
    )
    known = await artists.by_ids(tenant_id, sorted({t.artist_id for _, t in accepted}))
    valid: list[Track] = []
    for index, track in accepted:
        if track.artist_id in known:
            valid.append(track)
        else:
            rejected.append(Rejection(index, "artistId", f"unknown artist {track.artist_id}", True))
    await tracks.upsert_many(tenant_id, valid)
    # Read back: an update keeps the stored listen count, which the caller should see.
    stored = await tracks.by_ids(tenant_id, [t.id for t in valid])
    rejected.sort(key=lambda r: r.index)
    return BatchResult(stored=[stored[t.id] for t in valid if t.id in stored], rejected=rejected)
