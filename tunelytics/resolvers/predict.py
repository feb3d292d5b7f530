"""Forecasts of business and metric series: checks, tenancy, storage, error mapping.

Forecasting computes and stores a prediction: analysts and admins (Permission.TRAIN, like
every model the product fits). Reading stored predictions is Permission.READ: viewers too.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from strawberry import Info

from tunelytics.domain.auth import Permission
from tunelytics.domain.catalog import Track
from tunelytics.domain.predict import NotEnoughData, forecast
from tunelytics.domain.predict.business import (
    FORECASTER_VERSION,
    HISTORY,
    STEP,
    Prediction,
    SeriesKind,
    SeriesRef,
    counted_series,
    points_series,
)
from tunelytics.domain.predict.churn import ChurnRisk, ListenHistory, features, train_at
from tunelytics.domain.predict.forecast import Forecast, forecast_regular
from tunelytics.domain.predict.popularity import (
    HISTORY_DAYS,
    daily_matrix,
    predict_popularity,
    rising_tracks,
)
from tunelytics.resolvers.context import Context
from tunelytics.resolvers.errors import BadUserInput, NotFound
from tunelytics.storage.predictions import ListenSeriesRepository, PredictionRepository

CtxInfo = Info[Context, None]
MAX_HORIZON = 1_000
MAX_METRIC_POINTS = 20_000
MAX_STORED_PAGE = 100
CHURN_HISTORY = timedelta(days=180)
# Churn risks are learned from the tenant's whole history: recomputed at most this often
# per process, not per request.
CHURN_TTL_S = 300.0


async def forecast_series(info: CtxInfo, ref: SeriesRef, horizon: int, level: float) -> Prediction:
    principal = info.context.authorize(Permission.TRAIN)
    tenant = principal.tenant_id
    if not 1 <= horizon <= MAX_HORIZON:
        raise BadUserInput(f"horizon: between 1 and {MAX_HORIZON} steps")
    if not (math.isfinite(level) and 0.5 <= level < 1):
        raise BadUserInput("interval: a coverage level from 0.5 up to (not including) 1")
    levels = tuple(sorted({level, 0.8, 0.95}))
    try:
        if ref.kind is SeriesKind.METRIC:
            result = await _metric_forecast(info, tenant, ref, horizon, levels)
        else:
            result = await _listen_forecast(info, tenant, ref, horizon, levels)
    except NotEnoughData as error:
        raise BadUserInput(f"not enough data: {error}", reason="NOT_ENOUGH_DATA") from None
    store = PredictionRepository(info.context.storage.db)
    return await store.insert(tenant, ref.kind, ref.subject, level, result, _version(result))


def _version(result: Forecast) -> str:
    return f"{FORECASTER_VERSION}/{result.model}"


async def _listen_forecast(
    info: CtxInfo, tenant: str, ref: SeriesRef, horizon: int, levels: tuple[float, ...]
) -> Forecast:
    loaders = info.context.loaders
    track_ids: list[str] | None = None
    if ref.track_id is not None:
        await loaders.track.require(ref.track_id, "track")
        track_ids = [ref.track_id]
    elif ref.artist_id is not None:
        await loaders.artist.require(ref.artist_id, "artist")
        track_ids = [t.id for t in await loaders.tracks_by_artist.load(ref.artist_id)]
    step = STEP[ref.kind]
    since = datetime.now(UTC) - HISTORY[ref.kind]
    repo = ListenSeriesRepository(info.context.storage.db)
    count = repo.streams if ref.kind is SeriesKind.STREAMS else repo.active_listeners
    counts = await count(tenant, step, since, track_ids) if track_ids != [] else {}
    series = counted_series(counts, step)
    # CPU-bound for up to a few hundred ms: off the event loop.
    return await asyncio.to_thread(forecast_regular, series, horizon, levels)


async def _metric_forecast(
    info: CtxInfo, tenant: str, ref: SeriesRef, horizon: int, levels: tuple[float, ...]
) -> Forecast:
    # Read-only use of the monitoring issue's store (storage/monitoring.py).
    from tunelytics.storage.monitoring import monitoring_store

    assert ref.series_id is not None
    store = monitoring_store(info.context.storage.db)
    found = await store.series.by_ids(tenant, [ref.series_id])
    if ref.series_id not in found:
        raise NotFound(f"metric series {ref.series_id} not found")
    points = await store.points.between(tenant, ref.series_id, 0, 10**13 - 1, MAX_METRIC_POINTS)
    times, values = points_series([p.at_ms for p in points], [p.value for p in points])
    return await asyncio.to_thread(forecast, times, values, horizon, levels)


async def stored_predictions(
    info: CtxInfo, ref: SeriesRef | None, kind: SeriesKind | None, first: int
) -> list[Prediction]:
    principal = info.context.authorize(Permission.READ)
    if not 1 <= first <= MAX_STORED_PAGE:
        raise BadUserInput(f"first: between 1 and {MAX_STORED_PAGE}")
    store = PredictionRepository(info.context.storage.db)
    subject = ref.subject if ref is not None else None
    return await store.recent(principal.tenant_id, ref.kind if ref else kind, subject, first)


@dataclass(frozen=True, slots=True)
class ChurnScores:
    as_of: datetime
    by_listener: dict[str, ChurnRisk]
    ranked: list[ChurnRisk]


_churn_cache: dict[str, tuple[float, ChurnScores]] = {}
_churn_locks: dict[str, asyncio.Lock] = {}


def _score(rows: list[tuple[str, str, datetime, bool, int]]) -> ChurnScores:
    history = ListenHistory.of(rows)
    model, now = train_at(history)
    ids, x = features(history, now)
    risks = model.risks(ids, x)
    return ChurnScores(
        as_of=now,
        by_listener={r.listener_id: r for r in risks},
        ranked=sorted(risks, key=lambda r: (-r.probability, r.listener_id)),
    )


async def _churn_scores(info: CtxInfo, tenant: str) -> ChurnScores:
    lock = _churn_locks.setdefault(tenant, asyncio.Lock())
    async with lock:  # one computation per tenant at a time; the others wait for it
        cached = _churn_cache.get(tenant)
        if cached is not None and time.monotonic() - cached[0] < CHURN_TTL_S:
            return cached[1]
        repo = ListenSeriesRepository(info.context.storage.db)
        rows = await repo.history(tenant, datetime.now(UTC) - CHURN_HISTORY)
        try:
            scores = await asyncio.to_thread(_score, rows)
        except NotEnoughData as error:
            raise BadUserInput(f"not enough data: {error}", reason="NOT_ENOUGH_DATA") from None
        _churn_cache[tenant] = (time.monotonic(), scores)
        return scores


async def churn_risk(info: CtxInfo, listener_id: str) -> tuple[ChurnRisk, datetime]:
    principal = info.context.authorize(Permission.READ)
    await info.context.loaders.listener.require(listener_id, "listener")
    scores = await _churn_scores(info, principal.tenant_id)
    risk = scores.by_listener.get(listener_id)
    if risk is None:
        raise BadUserInput(
            f"not enough data: listener {listener_id} has no listens in the last "
            f"{CHURN_HISTORY.days} days",
            reason="NOT_ENOUGH_DATA",
        )
    return risk, scores.as_of


async def at_risk_listeners(info: CtxInfo, first: int) -> tuple[list[ChurnRisk], datetime]:
    principal = info.context.authorize(Permission.READ)
    if not 1 <= first <= MAX_STORED_PAGE:
        raise BadUserInput(f"first: between 1 and {MAX_STORED_PAGE}")
    scores = await _churn_scores(info, principal.tenant_id)
    return scores.ranked[:first], scores.as_of


@dataclass(frozen=True, slots=True)
class TrackPopularity:
    track_id: str
    predicted_7d: float
    last_7d: float
    growth: float


@dataclass(frozen=True, slots=True)
class PopularityScores:
    by_track: dict[str, TrackPopularity]
    rising: list[TrackPopularity]


# Read once per tenant every few minutes (one aggregation over 8 weeks of listens), like churn.
POPULARITY_TTL_S = 300.0
POPULARITY_DAYS = 56
_popularity_cache: dict[str, tuple[float, PopularityScores]] = {}
_popularity_locks: dict[str, asyncio.Lock] = {}


def _popularity(plays: dict[tuple[str, date], int], today: date) -> PopularityScores:
    if not plays:
        raise NotEnoughData("no listens in the last 8 weeks")
    # The newest complete UTC day, or the newest day with plays when the data stops earlier.
    last_day = min(today - timedelta(days=1), max(day for _, day in plays))
    first_day = min(day for _, day in plays)
    span = (last_day - first_day).days + 1
    if span < HISTORY_DAYS:
        raise NotEnoughData(
            f"track popularity needs {HISTORY_DAYS} days of listens, the tenant has {span}"
        )
    ids = sorted({track for track, _ in plays})
    p = predict_popularity(daily_matrix(plays, ids, last_day, POPULARITY_DAYS))
    scores = [
        TrackPopularity(t, float(p.predicted_7d[i]), float(p.last_7d[i]), float(p.growth[i]))
        for i, t in enumerate(ids)
    ]
    return PopularityScores(
        by_track={s.track_id: s for s in scores},
        rising=[scores[i] for i in rising_tracks(p, ids)],
    )


async def _popularity_scores(info: CtxInfo, tenant: str) -> PopularityScores:
    lock = _popularity_locks.setdefault(tenant, asyncio.Lock())
    async with lock:
        cached = _popularity_cache.get(tenant)
        if cached is not None and time.monotonic() - cached[0] < POPULARITY_TTL_S:
            return cached[1]
        now = datetime.now(UTC)
        since = datetime.combine(now.date(), datetime.min.time(), UTC) - timedelta(
            days=POPULARITY_DAYS
        )
        repo = ListenSeriesRepository(info.context.storage.db)
        plays = await repo.daily_track_plays(tenant, since)
        try:
            scores = await asyncio.to_thread(_popularity, plays, now.date())
        except NotEnoughData as error:
            raise BadUserInput(f"not enough data: {error}", reason="NOT_ENOUGH_DATA") from None
        _popularity_cache[tenant] = (time.monotonic(), scores)
        return scores


async def track_popularity(info: CtxInfo, track_id: str) -> TrackPopularity:
    principal = info.context.authorize(Permission.READ)
    await info.context.loaders.track.require(track_id, "track")
    scores = await _popularity_scores(info, principal.tenant_id)
    # A catalogue track without a play in 8 weeks: nothing predicted, no growth.
    return scores.by_track.get(track_id, TrackPopularity(track_id, 0.0, 0.0, 1.0))


async def rising(info: CtxInfo, first: int) -> list[tuple[Track, TrackPopularity]]:
    principal = info.context.authorize(Permission.READ)
    if not 1 <= first <= MAX_STORED_PAGE:
        raise BadUserInput(f"first: between 1 and {MAX_STORED_PAGE}")
    scores = await _popularity_scores(info, principal.tenant_id)
    # Skip tracks removed from the catalogue since their plays; read a few spares for them.
    candidates = scores.rising[: first * 2 + 10]
    tracks = await info.context.loaders.track.load_many([s.track_id for s in candidates])
    found = [(t, s) for t, s in zip(tracks, candidates, strict=True) if t is not None]
    return found[:first]
