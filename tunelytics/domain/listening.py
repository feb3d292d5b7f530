"""Listeners and listens: who played what, when, and for how long."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from tunelytics.domain.batches import BatchResult, sort_out
from tunelytics.domain.catalog import Track, check_id
from tunelytics.domain.errors import InvalidItem, UnknownReference

# A device that was offline may report late; one that reports the future has a bad clock.
MAX_CLOCK_SKEW = timedelta(minutes=5)
MAX_LATENESS = timedelta(days=365)
PLANS = ("free", "premium", "family", "student")
SOURCES = ("playlist", "album", "radio", "search", "library", "recommendation", "other")


@dataclass(slots=True)
class Listener:
    id: str
    country: str
    plan: str
    signup_at: datetime


@dataclass(slots=True)
class Listen:
    id: str
    listener_id: str
    track_id: str
    played_at: datetime
    ms_played: int
    skipped: bool
    source: str


def as_utc(moment: datetime) -> datetime:
    """Naive datetimes are taken to be UTC, which is what MongoDB stores."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def new_listen(
    listener_id: str,
    track: Track,
    played_at: datetime,
    ms_played: int,
    skipped: bool | None,
    source: str,
    now: datetime,
) -> Listen:
    """Validate one listen of a known track; raises InvalidItem naming the field.

    A listen that is not flagged either way counts as skipped when under 30 seconds
    were played, the threshold the streaming industry uses for a counted stream.
    """
    played_at = as_utc(played_at)
    if played_at > now + MAX_CLOCK_SKEW:
        raise InvalidItem("playedAt", "is in the future")
    if played_at < now - MAX_LATENESS:
        raise InvalidItem("playedAt", "is more than a year old")
    if ms_played < 0:
        raise InvalidItem("msPlayed", "must not be negative")
    if ms_played > track.duration_ms + 1000:
        raise InvalidItem("msPlayed", f"exceeds the track's duration of {track.duration_ms} ms")
    if source not in SOURCES:
        raise InvalidItem("source", f"must be one of {', '.join(SOURCES)}")
    if skipped is None:
        skipped = ms_played < 30_000 and ms_played < track.duration_ms
    return Listen(
        id="",
        listener_id=listener_id,
        track_id=track.id,
        played_at=played_at,
        ms_played=ms_played,
        skipped=skipped,
        source=source,
    )


@dataclass(frozen=True, slots=True)
class ListenerDraft:
    id: str
    country: str
    plan: str
    signup_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ListenDraft:
    listener_id: str
    track_id: str
    ms_played: int
    played_at: datetime | None = None
    skipped: bool | None = None
    source: str = "other"


class ListenerStore(Protocol):
    async def by_ids(self, tenant_id: str, ids: list[str]) -> dict[str, Listener]: ...
    async def upsert_many(self, tenant_id: str, listeners: list[Listener]) -> None: ...


class ListenStore(Protocol):
    async def insert_many(self, tenant_id: str, listens: list[Listen]) -> list[Listen]: ...


class ListenCounter(Protocol):
    async def by_ids(self, tenant_id: str, ids: list[str]) -> dict[str, Track]: ...
    async def add_listen_counts(self, tenant_id: str, counts: dict[str, int]) -> None: ...


def new_listener(draft: ListenerDraft, now: datetime) -> Listener:
    if not re.fullmatch(r"[A-Z]{2}", draft.country):
        raise InvalidItem("country", "must be an ISO 3166-1 alpha-2 code such as SE")
    if draft.plan not in PLANS:
        raise InvalidItem("plan", f"must be one of {', '.join(PLANS)}")
    signup_at = as_utc(draft.signup_at) if draft.signup_at else now
    if signup_at > now + MAX_CLOCK_SKEW:
        raise InvalidItem("signupAt", "is in the future")
    return Listener(
        id=check_id(draft.id, "id"), country=draft.country, plan=draft.plan, signup_at=signup_at
    )


async def upsert_listeners(
    tenant_id: str, drafts: list[ListenerDraft], listeners: ListenerStore, now: datetime
) -> BatchResult[Listener]:
    accepted, rejected = sort_out(drafts, lambda d: new_listener(d, now), key=lambda li: li.id)
    valid = [listener for _, listener in accepted]
    await listeners.upsert_many(tenant_id, valid)
    # Read back: an update keeps the original signup date.
    stored = await listeners.by_ids(tenant_id, [li.id for li in valid])
    return BatchResult(stored=[stored[li.id] for li in valid if li.id in stored], rejected=rejected)


async def record_listens(
    tenant_id: str,
    drafts: list[ListenDraft],
    tracks: ListenCounter,
    listeners: ListenerStore,
    listens: ListenStore,
    now: datetime,
) -> BatchResult[Listen]:
    """Store every valid listen; unknown tracks or listeners are rejected items."""
    known_tracks = await tracks.by_ids(tenant_id, sorted({d.track_id for d in drafts}))
    known_listeners = await listeners.by_ids(tenant_id, sorted({d.listener_id for d in drafts}))

    def build(draft: ListenDraft) -> Listen:
        if draft.listener_id not in known_listeners:
            raise UnknownReference("listenerId", f"unknown listener {draft.listener_id}")
        track = known_tracks.get(draft.track_id)
        if track is None:
            raise UnknownReference("trackId", f"unknown track {draft.track_id}")
        return new_listen(
            draft.listener_id,
            track,
            draft.played_at or now,
            draft.ms_played,
            draft.skipped,
            draft.source,
            now,
        )

    accepted, rejected = sort_out(drafts, build)
    stored = await listens.insert_many(tenant_id, [listen for _, listen in accepted])
    await tracks.add_listen_counts(tenant_id, dict(Counter(listen.track_id for listen in stored)))
    return BatchResult(stored=stored, rejected=rejected)
