"""The demo tenant, ready to explore from the first start.

- Monitoring (at seeding): default alert rules and a few days of service and business
  series with planted incidents, sent through the real pipeline (detection, alert
  engine), so its alerts and incidents exist.
- Models and forecasts (at `serve`, in the background, each only if the tenant has none):
  churn, popularity, genre and mood (when its seeded clips carry labels: audio_demo.py)
  and the recommender trained and activated as ordinary training jobs (the fast ones
  first), and a few stored forecasts made by the `forecast` mutation's
  own path. The API answers meanwhile; a model's fields say MODEL_NOT_READY until it is
  active.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from tunelytics.domain.models import Job, ModelKind
from tunelytics.domain.monitoring.alerting import Rule
from tunelytics.domain.monitoring.demo_series import DEMO_RULES, demo_series
from tunelytics.domain.monitoring.points import PointDraft
from tunelytics.domain.predict.business import SeriesKind, SeriesRef
from tunelytics.pubsub import LocalBroadcaster
from tunelytics.services.forecasting import (
    forecast_listens,
    interval_levels,
    series_tracks,
    store_forecast,
)
from tunelytics.services.monitoring import now_ms
from tunelytics.services.pipeline import build_pipeline
from tunelytics.services.training import TrainingService, train_demo_model
from tunelytics.storage import Storage
from tunelytics.storage.audio import AudioStore
from tunelytics.storage.predictions import ListenSeriesRepository, PredictionRepository
from tunelytics.storage.scope import tenant_scope

log = logging.getLogger(__name__)
BATCH = 1_000
# Churn and popularity train in seconds; the recommender takes longest, so it goes last.
DEMO_MODELS = (ModelKind.CHURN, ModelKind.POPULARITY, ModelKind.RECOMMENDER)
# (series, horizon in the series' steps): two days of hourly streams, two weeks of daily
# active listeners, a day of one artist's streams.
DEMO_FORECASTS = ((SeriesKind.STREAMS, 48), (SeriesKind.ACTIVE_LISTENERS, 14))
ARTIST_HORIZON = 24
_background: set[asyncio.Task[int]] = set()


def demo_point_count(days: int = 3) -> int:
    return sum(len(s.values) for s in demo_series(now_ms(), days))


async def seed_monitoring(
    storage: Storage,
    tenant_id: str,
    days: int = 3,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Store the rules (unless the tenant has some) and the series; returns the points."""
    pipeline = build_pipeline(storage.db, LocalBroadcaster())
    await storage.ensure_indexes()
    if not await pipeline.alerts.repo.all_rules(tenant_id):
        for data in DEMO_RULES:
            await pipeline.alerts.repo.save_rule(tenant_id, Rule.from_input(tenant_id, data))
    series = demo_series(now_ms() - 60_000, days)
    # In time order across series, as a live fleet would send them.
    drafts = [
        PointDraft(s.name, s.labels, at, value)
        for step in range(len(series[0].times_ms))
        for s in series
        for at, value in [(s.times_ms[step], s.values[step])]
    ]
    stored = 0
    for start in range(0, len(drafts), BATCH):
        chunk = drafts[start : start + BATCH]
        result = await pipeline.monitoring.ingest(tenant_id, chunk, days + 1)
        stored += result.stored
        if progress:
            progress(len(chunk))
    await pipeline.monitoring.flush(everything=True)
    await pipeline.monitoring.release_all()
    # Ingestion forecasts a series at most every few minutes of wall time, so during
    # seeding only from its first hours: after the last of those passes, one on the whole
    # history (a fresh service, as a starting server's periodic check), so the predictive
    # alert on web-1's CPU climb is there at once.
    if (pending := pipeline.alerts.forecasting.get(tenant_id)) is not None:
        await pending
    await build_pipeline(storage.db, LocalBroadcaster()).alerts.check_forecasts(tenant_id)
    return stored


async def prepare_demo(training: TrainingService, tenant_id: str) -> list[Job]:
    """Start the demo tenant's model training jobs and, in the background, its stored
    forecasts; returns the jobs started (none for a tenant that has its models)."""
    # Genre and mood (seconds on the demo's clips) before the recommender.
    audio = await AudioStore(training.storage.db).labelled_kinds(tenant_id)
    kinds = [*DEMO_MODELS[:-1], *audio, DEMO_MODELS[-1]]
    jobs = [job for kind in kinds if (job := await train_demo_model(training, tenant_id, kind))]
    task = asyncio.create_task(seed_forecasts(training.storage, tenant_id), name="demo-forecasts")
    _background.add(task)
    task.add_done_callback(_background.discard)
    return jobs


async def seed_forecasts(storage: Storage, tenant_id: str) -> int:
    """A few stored forecasts for a tenant that has none; returns how many were made."""
    try:
        if await storage.tenants.get(tenant_id) is None:
            return 0
        if await PredictionRepository(storage.db).recent(tenant_id, None, None, 1):
            return 0
        wanted: list[tuple[SeriesRef, list[str] | None, int]] = [
            (SeriesRef(kind), None, horizon) for kind, horizon in DEMO_FORECASTS
        ]
        artist = await storage.db["artists"].find_one(
            tenant_scope(tenant_id), {"_id": 0, "id": 1}, sort=[("id", 1)]
        )
        if artist is not None:
            ref = SeriesRef(SeriesKind.STREAMS, artist_id=artist["id"])
            tracks = await series_tracks(ListenSeriesRepository(storage.db), tenant_id, ref)
            wanted.append((ref, tracks, ARTIST_HORIZON))
        made = 0
        for ref, of_tracks, horizon in wanted:
            result = await forecast_listens(
                storage, tenant_id, ref, of_tracks, horizon, interval_levels(0.8)
            )
            await store_forecast(storage, tenant_id, ref, 0.8, result)
            made += 1
        log.info("stored the demo forecasts", extra={"tenant": tenant_id, "forecasts": made})
        return made
    except asyncio.CancelledError:
        raise
    except Exception:
        # The demo goes on without them: `forecast` makes one on demand.
        log.exception("cannot store the demo forecasts", extra={"tenant": tenant_id})
        return 0
