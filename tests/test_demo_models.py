"""The demo tenant at `serve`: its models trained and activated as ordinary jobs, and a
few stored forecasts, each only once."""

from __future__ import annotations

import asyncio
import uuid

from tunelytics.domain.demo import DemoSize
from tunelytics.domain.models import JobStatus, ModelKind, ModelStatus
from tunelytics.pubsub import LocalBroadcaster
from tunelytics.seeding import seed_demo
from tunelytics.services import demo
from tunelytics.services.trainers import TRAINERS
from tunelytics.services.training import TrainingService
from tunelytics.storage import Storage
from tunelytics.storage.predictions import PredictionRepository

SIZE = DemoSize(artists=6, tracks=60, listeners=80, listens=5_000, days=70)


async def settle(training: TrainingService) -> None:
    await asyncio.gather(*training.running, *demo._background)


async def test_the_demo_tenant_gets_models_and_forecasts_once(storage: Storage) -> None:
    slug = f"t-{uuid.uuid4().hex[:10]}"
    seeded = await seed_demo(storage, slug, name="Demo", size=SIZE, seed=4)
    training = TrainingService(storage, LocalBroadcaster(), TRAINERS)
    try:
        jobs = await demo.prepare_demo(training, slug)
        assert [j.kind for j in jobs] == list(demo.DEMO_MODELS)
        await settle(training)
        for kind in demo.DEMO_MODELS:
            active = await storage.models.active(slug, kind)
            assert active is not None and active.status == ModelStatus.ACTIVE, kind
            assert active.created_by == "serve"
        for job in jobs:
            done = await storage.jobs.get(slug, job.id)
            assert done is not None and done.status == JobStatus.SUCCEEDED, done
        churn = await storage.models.active(slug, ModelKind.CHURN)
        assert churn is not None and {"auc", "brier"} <= churn.metrics.keys()
        # Its listeners follow others (GraphiQL's listener.following has something to show).
        stored = await storage.listeners.by_ids(slug, [li.id for li in seeded.listeners])
        assert [stored[li.id].follows for li in seeded.listeners] == [
            li.follows for li in seeded.listeners
        ]
        assert all(3 <= len(li.follows) <= 10 for li in seeded.listeners)
        stored = await PredictionRepository(storage.db).recent(slug, None, None, 10)
        subjects = sorted(p.subject for p in stored)
        assert subjects == ["artist:ar-0001", "tenant", "tenant"]
        assert all(p.model_version.endswith(p.forecast.model) for p in stored)

        # A second start finds everything in place: no new jobs, no new forecasts.
        assert await demo.prepare_demo(training, slug) == []
        await settle(training)
        assert len(await PredictionRepository(storage.db).recent(slug, None, None, 10)) == 3
        # Another tenant's forecasts are its own: none of these.
        assert await PredictionRepository(storage.db).recent("no-such", None, None, 10) == []
        assert await demo.prepare_demo(training, "no-such") == []
    finally:
        await settle(training)
        await training.stop()
