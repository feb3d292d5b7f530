"""Forecasting a business series and storing the prediction: one path for the `forecast`
mutation and the demo's stored forecasts.

There is no registered forecaster model kind on purpose: the model is chosen per series
by rolling-origin backtest when forecasting (domain/predict/forecast.py), on the
series' newest data, in well under a second; a stored fit would be stale by the next
hour. A stored prediction records what made it: the chosen model, the backtest, and
`model_version` = the forecasting procedure's version / the chosen model.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from tunelytics.domain.predict.business import (
    FORECASTER_VERSION,
    HISTORY,
    STEP,
    Prediction,
    SeriesKind,
    SeriesRef,
    bucket_start,
    counted_series,
)
from tunelytics.domain.predict.forecast import Forecast, forecast_regular
from tunelytics.domain.predict.series import RegularSeries
from tunelytics.storage import Storage
from tunelytics.storage.predictions import ListenSeriesRepository, PredictionRepository

# Forecasts always carry these interval levels besides the one asked for.
STANDARD_LEVELS = (0.8, 0.95)


def interval_levels(level: float) -> tuple[float, ...]:
    return tuple(sorted({level, *STANDARD_LEVELS}))


def model_version(result: Forecast) -> str:
    return f"{FORECASTER_VERSION}/{result.model}"


async def forecast_listens(
    storage: Storage,
    tenant_id: str,
    ref: SeriesRef,
    track_ids: list[str] | None,
    horizon: int,
    levels: tuple[float, ...],
) -> Forecast:
    """Forecast streams or active listeners counted from the tenant's listens (of
    `track_ids` when given: an artist's or one track's). Raises NotEnoughData."""
    series = await listen_series(ListenSeriesRepository(storage.db), tenant_id, ref, track_ids)
    # CPU-bound for up to a few hundred ms: off the event loop.
    return await asyncio.to_thread(forecast_regular, series, horizon, levels)


async def series_tracks(
    repo: ListenSeriesRepository, tenant_id: str, ref: SeriesRef
) -> list[str] | None:
    """The tracks a derived series counts: one track's, an artist's, or None (all)."""
    if ref.track_id is not None:
        return [ref.track_id]
    if ref.artist_id is not None:
        return await repo.track_ids_of_artist(tenant_id, ref.artist_id)
    return None


async def listen_series(
    repo: ListenSeriesRepository,
    tenant_id: str,
    ref: SeriesRef,
    track_ids: list[str] | None,
    now: datetime | None = None,
) -> RegularSeries:
    """Streams or active listeners counted from the tenant's listens (of `track_ids`
    when given), up to the newest bucket with a listen but never the one in progress,
    which would read as a drop. Quiet hours after the newest listen are not counted as
    zeros: listens often arrive late, in batches. Raises NotEnoughData without any."""
    assert ref.kind is not SeriesKind.METRIC
    step = STEP[ref.kind]
    current = bucket_start(now or datetime.now(UTC), step)
    count = repo.streams if ref.kind is SeriesKind.STREAMS else repo.active_listeners
    since = current - HISTORY[ref.kind]
    counts = await count(tenant_id, step, since, track_ids) if track_ids != [] else {}
    return counted_series({at: n for at, n in counts.items() if at < current}, step)


async def store_forecast(
    storage: Storage, tenant_id: str, ref: SeriesRef, level: float, result: Forecast
) -> Prediction:
    store = PredictionRepository(storage.db)
    return await store.insert(
        tenant_id, ref.kind, ref.subject, level, result, model_version(result)
    )
