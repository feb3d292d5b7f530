"""A deterministic, realistic-looking streaming catalogue for demos and benchmarks.

The shape follows what streaming services report: a long-tailed popularity curve
(a few tracks take most plays), listening in sessions, an evening peak with a quiet
night, livelier weekends, skips that are more likely outside a listener's taste.

>>> demo = generate_demo(DemoSize(artists=5, tracks=20, listeners=10, listens=100))
>>> len(demo.listens), len({t.id for t in demo.tracks})
(100, 20)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

from tunelytics.domain.catalog import Artist, Track
from tunelytics.domain.listening import PLANS, SOURCES, Listen, Listener

GENRES = (
    "pop",
    "rock",
    "hip-hop",
    "electronic",
    "indie",
    "jazz",
    "classical",
    "r&b",
    "metal",
    "folk",
    "country",
    "latin",
    "reggae",
    "blues",
    "soul",
    "ambient",
)
GENRE_SHARE = np.array([18, 14, 16, 12, 9, 4, 3, 7, 4, 3, 3, 3, 1, 1, 1, 1], dtype=float)
COUNTRIES = ("US", "GB", "DE", "SE", "BR", "MX", "FR", "JP", "IN", "NG", "ES", "CA")
COUNTRY_SHARE = np.array([24, 10, 10, 6, 10, 7, 7, 6, 8, 4, 4, 4], dtype=float)
PLAN_SHARE = np.array([55, 30, 10, 5], dtype=float)
SOURCE_SHARE = np.array([40, 20, 10, 8, 14, 8, 0], dtype=float)
# Share of a day's listening by hour (UTC): a night trough, a commute bump, an evening peak.
HOURLY = np.array(
    [
        2,
        1.2,
        0.8,
        0.6,
        0.6,
        0.9,
        2,
        3.5,
        4.5,
        4,
        4,
        4.3,
        4.8,
        4.6,
        4.3,
        4.5,
        5,
        5.5,
        6.2,
        6.8,
        7,
        6.4,
        5,
        3.3,
    ],
)
WEEKDAY = np.array([0.92, 0.93, 0.95, 0.98, 1.08, 1.14, 1.1])  # Monday first
# Rising tracks: without them every track's plays are flat noise around its appeal, and
# the popularity model finds nothing rising on the demo (issue 6). A few mid/low-popularity
# tracks catch on over the window's last RISING_DAYS, as a track picked up by playlists or
# social media does: each one's share of all plays grows by RISING_WEEKLY a week, up to
# about a top track's share on the last day. They are drawn from a generator of their own,
# so every other draw (and with it the rest of the data) is what it was without them.
RISING_TRACKS = 6
RISING_DAYS = 21
RISING_WEEKLY = 2.7
RISING_FINAL_SHARE = (0.010, 0.014)  # of the last day's plays, per rising track
RISING_MIN_TRACKS = 100  # smaller catalogues (tests' sizes) are left flat
# Who follows whom: each listener follows a few others, mostly of its own taste (friends
# share music), so the recommender's following view has something to learn from. Drawn
# from a generator of their own, like the rising tracks: the rest of the data is as it was.
FOLLOWS_PER_LISTENER = (3, 10)  # inclusive
FOLLOWS_SAME_TASTE = 0.8
SYLLABLES = (
    "ka",
    "lo",
    "mi",
    "ra",
    "ve",
    "no",
    "sa",
    "tu",
    "el",
    "an",
    "is",
    "or",
    "be",
    "da",
    "fi",
    "ge",
    "ho",
    "ju",
    "ly",
    "ma",
    "ne",
    "pi",
    "qu",
    "si",
    "ta",
    "vo",
    "wy",
    "ze",
)
WORDS = (
    "night",
    "fire",
    "river",
    "gold",
    "blue",
    "echo",
    "summer",
    "ghost",
    "city",
    "heart",
    "dream",
    "wild",
    "neon",
    "storm",
    "glass",
    "paper",
    "silver",
    "velvet",
    "static",
    "moon",
    "run",
    "falling",
    "light",
    "shadow",
    "ocean",
    "satellite",
    "honey",
    "electric",
    "home",
)


@dataclass(frozen=True, slots=True)
class DemoSize:
    artists: int = 200
    tracks: int = 5_000
    listeners: int = 1_000
    listens: int = 200_000
    days: int = 90


@dataclass(slots=True)
class Demo:
    artists: list[Artist]
    tracks: list[Track]
    listeners: list[Listener]
    listens: list[Listen]
    start: datetime
    end: datetime
    rising_track_ids: list[str]  # the tracks planted to catch on near the end


def _normalise(weights: np.ndarray) -> np.ndarray:
    return weights / weights.sum()


def _name(rng: np.random.Generator, syllables: int) -> str:
    return "".join(rng.choice(SYLLABLES, size=syllables)).capitalize()


def _title(rng: np.random.Generator) -> str:
    words = rng.choice(WORDS, size=int(rng.integers(1, 4)), replace=False)
    return " ".join(str(w) for w in words).title()


def generate_demo(size: DemoSize | None = None, seed: int = 7, end: datetime | None = None) -> Demo:
    """Build the whole demo catalogue and history; the same seed and end give the same data."""
    rng = np.random.default_rng(seed)
    size = size or DemoSize()
    if end is None:
        end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = end - timedelta(days=size.days)

    artists, artist_weight, artist_genre = _artists(rng, size.artists)
    tracks, track_weight = _tracks(rng, size.tracks, artists, artist_weight, artist_genre)
    listeners, listener_taste, listener_activity = _listeners(rng, size.listeners, start, end)
    _follow(np.random.default_rng([seed, 7]), listeners, listener_taste)
    rising = _Rising(np.random.default_rng([seed, 6]), size)
    listens = list(
        _listens(
            rng,
            size,
            start,
            tracks,
            track_weight,
            listeners,
            listener_taste,
            listener_activity,
            rising,
        )
    )
    for track, count in zip(tracks, _counts(listens, tracks), strict=True):
        track.listen_count = count
    rising_ids = [tracks[i].id for i in rising.tracks]  # planted as the listens were drawn
    return Demo(artists, tracks, listeners, listens, start, end, rising_ids)


def _artists(rng: np.random.Generator, n: int) -> tuple[list[Artist], np.ndarray, np.ndarray]:
    genre = rng.choice(len(GENRES), size=n, p=_normalise(GENRE_SHARE))
    # Zipf-like: the artist at rank r gets weight 1 / r^1.1.
    weight = 1.0 / np.arange(1, n + 1) ** 1.1
    rng.shuffle(weight)
    artists = []
    for i in range(n):
        second = rng.integers(len(GENRES))
        genres = [GENRES[genre[i]]] + ([GENRES[second]] if rng.random() < 0.3 else [])
        artists.append(
            Artist(
                id=f"ar-{i + 1:04d}",
                name=f"{_name(rng, int(rng.integers(2, 4)))} {_name(rng, 2)}"
                if rng.random() < 0.6
                else f"The {_title(rng)}",
                genres=list(dict.fromkeys(genres)),
                country=str(rng.choice(COUNTRIES, p=_normalise(COUNTRY_SHARE))),
            )
        )
    return artists, weight, genre


def _tracks(
    rng: np.random.Generator,
    n: int,
    artists: list[Artist],
    artist_weight: np.ndarray,
    artist_genre: np.ndarray,
) -> tuple[list[Track], np.ndarray]:
    # Popular artists release more; each track's own appeal varies around its artist's.
    owner = rng.choice(len(artists), size=n, p=_normalise(artist_weight**0.5))
    owner[: len(artists)] = np.arange(len(artists))  # every artist has a track
    appeal = artist_weight[owner] * rng.lognormal(0.0, 1.0, size=n)
    duration = np.clip(rng.lognormal(np.log(210_000), 0.3, size=n), 60_000, 720_000).astype(int)
    released_days = rng.integers(0, 20 * 365, size=n)
    tracks = []
    for i in range(n):
        artist = artists[owner[i]]
        tracks.append(
            Track(
                id=f"tr-{i + 1:05d}",
                title=_title(rng),
                artist_id=artist.id,
                duration_ms=int(duration[i]),
                genres=list(artist.genres),
                released_at=datetime(2026, 1, 1, tzinfo=UTC)
                - timedelta(days=int(released_days[i])),
            )
        )
    return tracks, _normalise(appeal)


def _listeners(
    rng: np.random.Generator, n: int, start: datetime, end: datetime
) -> tuple[list[Listener], np.ndarray, np.ndarray]:
    countries = rng.choice(len(COUNTRIES), size=n, p=_normalise(COUNTRY_SHARE))
    plans = rng.choice(len(PLANS), size=n, p=_normalise(PLAN_SHARE))
    # Most signed up long ago; a steady trickle joins during the window.
    joined_before = rng.random(n) < 0.8
    days_before = rng.integers(1, 3 * 365, size=n)
    window_days = (end - start).days
    days_into = rng.integers(0, window_days, size=n)
    taste = rng.choice(len(GENRES), size=n, p=_normalise(GENRE_SHARE))
    activity = rng.lognormal(0.0, 1.0, size=n)
    listeners = []
    for i in range(n):
        signup = (
            start - timedelta(days=int(days_before[i]))
            if joined_before[i]
            else start + timedelta(days=int(days_into[i]))
        )
        signup += timedelta(seconds=int(rng.integers(0, 86_400)))
        listeners.append(
            Listener(
                id=f"li-{i + 1:05d}",
                country=COUNTRIES[countries[i]],
                plan=PLANS[plans[i]],
                signup_at=signup,
            )
        )
    return listeners, taste, activity


def _follow(rng: np.random.Generator, listeners: list[Listener], taste: np.ndarray) -> None:
    """Give each listener FOLLOWS_PER_LISTENER others to follow, in place; each one of the
    same taste with probability FOLLOWS_SAME_TASTE (while there are such listeners left)."""
    n = len(listeners)
    by_taste = {int(g): np.flatnonzero(taste == g) for g in np.unique(taste)}
    everyone = np.arange(n)
    for i, listener in enumerate(listeners):
        count = min(int(rng.integers(FOLLOWS_PER_LISTENER[0], FOLLOWS_PER_LISTENER[1] + 1)), n - 1)
        same = by_taste[int(taste[i])]
        same = same[same != i]
        other = np.setdiff1d(everyone, np.append(same, i), assume_unique=True)
        n_same = min(int((rng.random(count) < FOLLOWS_SAME_TASTE).sum()), len(same))
        n_other = min(count - n_same, len(other))
        n_same = min(count - n_other, len(same))  # too few of other tastes: more of its own
        chosen = np.concatenate(
            [
                rng.choice(same, size=n_same, replace=False),
                rng.choice(other, size=n_other, replace=False),
            ]
        )
        listener.follows = [listeners[j].id for j in sorted(chosen.tolist())]


@dataclass(slots=True)
class _Rising:
    """Plants the rising tracks in the drawn listens; `tracks`: the rows planted."""

    rng: np.random.Generator
    size: DemoSize
    tracks: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))

    def plant(self, chosen: np.ndarray, at_s: np.ndarray) -> None:
        """Hand some of the last weeks' plays (`chosen` tracks, their times `at_s` in
        seconds into the window) to the rising tracks, in place: each one's share grows
        by RISING_WEEKLY a week to its final share on the last day."""
        size = self.size
        if size.tracks < RISING_MIN_TRACKS or size.days < RISING_DAYS + 7:
            return
        # Mid/low popularity by the plays drawn: between the top 10% and the median.
        by_plays = np.argsort(-np.bincount(chosen, minlength=size.tracks), kind="stable")
        band = by_plays[size.tracks // 10 : size.tracks // 2]
        self.tracks = np.sort(self.rng.choice(band, size=RISING_TRACKS, replace=False))
        final_share = self.rng.uniform(*RISING_FINAL_SHARE, size=RISING_TRACKS)
        days_to_end = size.days - at_s / 86_400  # 0 at the window's end
        share = final_share[None, :] * RISING_WEEKLY ** (-days_to_end[:, None] / 7)
        share[days_to_end > RISING_DAYS] = 0.0
        # One draw per listen: below the first bound the first track, and so on.
        u = self.rng.random(len(chosen))
        pick = (u[:, None] >= np.cumsum(share, axis=1)).sum(axis=1)
        taken = pick < RISING_TRACKS
        chosen[taken] = self.tracks[pick[taken]]


def _listens(
    rng: np.random.Generator,
    size: DemoSize,
    start: datetime,
    tracks: list[Track],
    track_weight: np.ndarray,
    listeners: list[Listener],
    taste: np.ndarray,
    activity: np.ndarray,
    rising: _Rising,
) -> Iterator[Listen]:
    n = size.listens
    mean_session = 8.0
    sessions = int(n / mean_session * 1.3) + 10
    length = rng.geometric(1 / mean_session, size=sessions)
    cut = int(np.searchsorted(np.cumsum(length), n)) + 1
    length = length[:cut]
    length[-1] -= int(length.sum() - n)
    sessions = len(length)

    who = rng.choice(len(listeners), size=sessions, p=_normalise(activity))
    day_weight = np.array(
        [WEEKDAY[(start + timedelta(days=d)).weekday()] for d in range(size.days)]
    )
    # A slow growth over the window, as a healthy service shows.
    day_weight *= np.linspace(0.9, 1.1, size.days)
    day = rng.choice(size.days, size=sessions, p=_normalise(day_weight))
    hour = rng.choice(24, size=sessions, p=_normalise(HOURLY))
    second = rng.integers(0, 3600, size=sessions)
    # Sessions near the end of the window would run past it; keep them inside.
    horizon = size.days * 86_400
    session_start = np.minimum(day * 86_400 + hour * 3600 + second, horizon - 6 * 3600)
    signup_offset = np.array(
        [(listener.signup_at - start).total_seconds() for listener in listeners]
    )
    # Nobody listens before signing up: move such sessions to after the signup.
    too_early = session_start < signup_offset[who]
    session_start = np.where(
        too_early,
        np.minimum(signup_offset[who] + rng.integers(600, 86_400, size=sessions), horizon - 7200),
        session_start,
    )

    session_of = np.repeat(np.arange(sessions), length)
    listener_of = who[session_of]
    track_genre = np.array([GENRES.index(t.genres[0]) for t in tracks])
    chosen = rng.choice(len(tracks), size=n, p=track_weight)
    in_taste = rng.random(n) < 0.6
    for genre in range(len(GENRES)):
        members = np.flatnonzero(track_genre == genre)
        rows = np.flatnonzero(in_taste & (taste[listener_of] == genre))
        if len(members) and len(rows):
            chosen[rows] = rng.choice(members, size=len(rows), p=_normalise(track_weight[members]))
    rising.plant(chosen, session_start[session_of])

    duration = np.array([t.duration_ms for t in tracks])[chosen]
    matches_taste = track_genre[chosen] == taste[listener_of]
    skip_chance = np.where(matches_taste, 0.15, 0.35)
    skipped = rng.random(n) < skip_chance
    partial = rng.random(n) < 0.15
    played = np.where(
        skipped,
        rng.integers(1_000, 30_000, size=n),
        np.where(partial, (duration * rng.uniform(0.3, 0.95, size=n)).astype(int), duration),
    )
    played = np.minimum(played, duration)
    gap = rng.integers(0, 4_000, size=n)
    # Within a session each listen starts when the previous one stopped.
    elapsed = np.cumsum(played + gap) - (played + gap)
    first_of_session = np.cumsum(length) - length
    offset_ms = elapsed - np.repeat(elapsed[first_of_session], length)
    at_ms = session_start[session_of].astype(np.int64) * 1000 + offset_ms
    source_choice = rng.choice(len(SOURCES), size=sessions, p=_normalise(SOURCE_SHARE))

    order = np.argsort(at_ms, kind="stable")
    start_ms = int(start.timestamp() * 1000)
    for i in order:
        yield Listen(
            id="",  # assigned by storage
            listener_id=listeners[listener_of[i]].id,
            track_id=tracks[chosen[i]].id,
            played_at=datetime.fromtimestamp((start_ms + int(at_ms[i])) / 1000, tz=UTC),
            ms_played=int(played[i]),
            skipped=bool(skipped[i]),
            source=SOURCES[source_choice[session_of[i]]],
        )


def _counts(listens: list[Listen], tracks: list[Track]) -> list[int]:
    index = {t.id: i for i, t in enumerate(tracks)}
    counts = [0] * len(tracks)
    for listen in listens:
        counts[index[listen.track_id]] += 1
    return counts
