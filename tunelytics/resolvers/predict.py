"""Forecasts, churn risks and track popularity: checks, tenancy, serving, error mapping.

Forecasting computes and stores a prediction: analysts and admins (Permission.TRAIN, like
every model the product fits). Reading stored predictions, churn risks and popularity is
Permission.READ: viewers too.

Churn and popularity are served from the tenant's active CHURN / POPULARITY model
(trainModel, activateModel): its learned parameters applied to features read now, once
per tenant data version and served version (the tenant cache), in the model server's
inference thread. No active version: MODEL_NOT_READY, saying why.
"""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime

from strawberry import Info

from tunelytics.domain.auth import Permission
from tunelytics.domain.catalog import Track
from tunelytics.domain.models import ModelKind
from tunelytics.domain.predict import NotEnoughData, forecast
from tunelytics.domain.predict.business import (
    Prediction,
    SeriesKind,
    SeriesRef,
    points_series,
)
from tunelytics.domain.predict.churn import ChurnRisk, ChurnScores
from tunelytics.domain.predict.forecast import Forecast
from tunelytics.domain.predict.popularity import PopularityScores, TrackPopularity
from tunelytics.resolvers.context import Context
from tunelytics.resolvers.errors import BadUserInput, NotFound
from tunelytics.resolvers.models import served
from tunelytics.services.forecasting import forecast_listens, interval_levels, store_forecast
from tunelytics.storage.predictions import (
    CHURN_HISTORY,
    POPULARITY_SERVING_DAYS,
    PredictionRepository,
    read_churn_history,
    read_daily_plays,
)

CtxInfo = Info[Context, None]
MAX_HORIZON = 1_000
MAX_METRIC_POINTS = 20_000
MAX_STORED_PAGE = 100


def not_enough(error: NotEnoughData) -> BadUserInput:
    return BadUserInput(f"not enough data: {error}", reason="NOT_ENOUGH_DATA")


async def forecast_series(info: CtxInfo, ref: SeriesRef, horizon: int, level: float) -> Prediction:
    ctx = info.context
    tenant = ctx.authorize(Permission.TRAIN).tenant_id
    if not 1 <= horizon <= MAX_HORIZON:
        raise BadUserInput(f"horizon: between 1 and {MAX_HORIZON} steps")
    if not (math.isfinite(level) and 0.5 <= level < 1):
        raise BadUserInput("interval: a coverage level from 0.5 up to (not including) 1")
    levels = interval_levels(level)
    try:
        if ref.kind is SeriesKind.METRIC:
            result = await _metric_forecast(info, tenant, ref, horizon, levels)
        else:
            track_ids = await _track_ids(info, ref)
            result = await forecast_listens(ctx.storage, tenant, ref, track_ids, horizon, levels)
    except NotEnoughData as error:
        raise not_enough(error) from None
    return await store_forecast(ctx.storage, tenant, ref, level, result)


async def _track_ids(info: CtxInfo, ref: SeriesRef) -> list[str] | None:
    """The tracks of the series (None: the whole tenant), checked to exist in the tenant."""
    loaders = info.context.loaders
    if ref.track_id is not None:
        await loaders.track.require(ref.track_id, "track")
        return [ref.track_id]
    if ref.artist_id is not None:
        await loaders.artist.require(ref.artist_id, "artist")
        return [t.id for t in await loaders.tracks_by_artist.load(ref.artist_id)]
    return None


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


async def _churn_scores(info: CtxInfo, tenant: str) -> ChurnScores:
    ctx = info.context
    model = await served(ctx, tenant, ModelKind.CHURN)

    async def score() -> ChurnScores:
        history = await read_churn_history(ctx.storage, tenant)
        result: ChurnScores = await model.call("score", history)
        return result

    try:
        return await ctx.services.cache.get(
            ctx.storage, tenant, ModelKind.CHURN, score, model.version.version
        )
    except NotEnoughData as error:
        raise not_enough(error) from None


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


async def _popularity_scores(info: CtxInfo, tenant: str) -> PopularityScores:
    ctx = info.context
    model = await served(ctx, tenant, ModelKind.POPULARITY)
    today = datetime.now(UTC).date()  # the newest complete day moves at midnight

    async def score() -> PopularityScores:
        plays = await read_daily_plays(ctx.storage, tenant, POPULARITY_SERVING_DAYS)
        result: PopularityScores = await model.call("score", plays)
        return result

    try:
        return await ctx.services.cache.get(
            ctx.storage, tenant, ModelKind.POPULARITY, score, model.version.version, today
        )
    except NotEnoughData as error:
        raise not_enough(error) from None


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
