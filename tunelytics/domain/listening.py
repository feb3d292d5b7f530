"""Listeners and listens: who played what, when, and for how long."""

from __future__ import annotations

import re
from collections import Counter, defaultdict, deque
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from tunelytics.domain.batches import BatchResult, Rejection, sort_out
from tunelytics.domain.catalog import Track, check_id
from tunelytics.domain.errors import InvalidItem, UnknownReference

# A device that was offline may report late; one that reports the future has a bad clock.
MAX_CLOCK_SKEW = timedelta(minutes=5)
MAX_LATENESS = timedelta(days=365)
PLANS = ("free", "premium", "family", "student")
SOURCES = ("playlist", "album", "radio", "search", "library", "recommendation", "other")
# Far above any real social circle; bounds the document and what `following` may read.
MAX_FOLLOWS = 1_000
# A rejection names at most this many unknown IDs (the message stays readable).
MAX_NAMED_UNKNOWN = 10


@dataclass(slots=True)
class Listener:
    id: str
    country: str
    plan: str
    signup_at: datetime
    # IDs of listeners of the same tenant this one follows, in the order given.
    follows: list[str] = field(default_factory=list)


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
    # None: an update keeps the stored list (a new listener follows nobody); a list
    # replaces it.
    follows: list[str] | None = None


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
    async def existing_ids(self, tenant_id: str, ids: list[str]) -> set[str]: ...
    async def upsert_many(
        self, tenant_id: str, listeners: list[Listener], keep_follows: Collection[str] = ()
    ) -> None: ...


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
    listener_id = check_id(draft.id, "id")
    return Listener(
        id=listener_id,
        country=draft.country,
        plan=draft.plan,
        signup_at=signup_at,
        follows=clean_follows(listener_id, draft.follows or []),
    )


def clean_follows(listener_id: str, follows: list[str]) -> list[str]:
    """Distinct listener IDs, order kept; whether they exist is checked per batch."""
    cleaned = list(dict.fromkeys(check_id(followed, "follows") for followed in follows))
    if listener_id in cleaned:
        raise InvalidItem("follows", "a listener cannot follow itself")
    if len(cleaned) > MAX_FOLLOWS:
        raise InvalidItem("follows", f"a listener may follow at most {MAX_FOLLOWS} listeners")
    return cleaned


def _naming(ids: list[str]) -> str:
    named = ", ".join(ids[:MAX_NAMED_UNKNOWN])
    more = len(ids) - MAX_NAMED_UNKNOWN
    return f"{named} and {more} more" if more > 0 else named


async def _drop_unknown_follows(
    tenant_id: str, accepted: list[tuple[int, Listener]], listeners: ListenerStore
) -> tuple[list[tuple[int, Listener]], list[Rejection]]:
    """Keep the items whose followed listeners exist already or are stored by this batch.

    A rejected item is not stored, so an item that follows the new listener it would have
    created is rejected in turn.
    """
    in_batch = {listener.id for _, listener in accepted}
    existing = await listeners.existing_ids(
        tenant_id, sorted({f for _, listener in accepted for f in listener.follows})
    )
    rejected: list[Rejection] = []
    removed: set[int] = set()  # positions in `accepted`
    followers: defaultdict[str, list[int]] = defaultdict(list)  # new listener -> positions
    for at, (index, listener) in enumerate(accepted):
        if unknown := [f for f in listener.follows if f not in in_batch and f not in existing]:
            rejected.append(
                Rejection(index, "follows", f"unknown listener {_naming(unknown)}", True)
            )
            removed.add(at)
        for followed in listener.follows:
            if followed in in_batch and followed not in existing:
                followers[followed].append(at)
    pending = deque(sorted(removed))
    while pending:
        gone = accepted[pending.popleft()][1].id
        for at in followers.pop(gone, []):
            if at not in removed:
                removed.add(at)
                pending.append(at)
                reason = f"unknown listener {gone}: its own item in this batch was rejected"
                rejected.append(Rejection(accepted[at][0], "follows", reason, True))
    return [item for at, item in enumerate(accepted) if at not in removed], rejected


async def upsert_listeners(
    tenant_id: str, drafts: list[ListenerDraft], listeners: ListenerStore, now: datetime
) -> BatchResult[Listener]:
    accepted, rejected = sort_out(drafts, lambda d: new_listener(d, now), key=lambda li: li.id)
    accepted, unknown = await _drop_unknown_follows(tenant_id, accepted, listeners)
    rejected = sorted(rejected + unknown, key=lambda r: r.index)
    valid = [listener for _, listener in accepted]
    keep = {listener.id for index, listener in accepted if drafts[index].follows is None}
    await listeners.upsert_many(tenant_id, valid, keep_follows=keep)
    # Read back: an update keeps the original signup date (and, unless given, its follows).
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
    known_listeners = await listeners.existing_ids(
        tenant_id, sorted({d.listener_id for d in drafts})
    )

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
