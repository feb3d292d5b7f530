"""The demo tenant's monitoring: default alert rules and a few days of service and
business series with planted incidents, sent through the real pipeline (detection,
alert engine), so its alerts and incidents exist from the first start."""

from __future__ import annotations

from collections.abc import Callable

from tunelytics.domain.monitoring.alerting import Rule
from tunelytics.domain.monitoring.demo_series import DEMO_RULES, demo_series
from tunelytics.domain.monitoring.points import PointDraft
from tunelytics.pubsub import LocalBroadcaster
from tunelytics.services.monitoring import now_ms
from tunelytics.services.pipeline import build_pipeline
from tunelytics.storage import Storage

BATCH = 1_000


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
    return stored
