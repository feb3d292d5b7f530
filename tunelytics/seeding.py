"""Loading the generated demo catalogue into a tenant, in bulk, with progress."""

from __future__ import annotations

from collections.abc import Callable

from tunelytics.domain.demo import Demo, DemoSize, generate_demo
from tunelytics.domain.tenancy import Tenant
from tunelytics.storage import Storage
from tunelytics.storage.analytics import AnalyticsRepository
from tunelytics.storage.scope import tenant_scope

CHUNK = 10_000
TENANT_COLLECTIONS = (
    "artists", "tracks", "listeners", "listens",
    # Monitoring: series, points, detector checkpoints, the alerting state.
    "metric_series", "metric_buckets", "metric_checkpoints", "alert_rules", "silences",
    "alerts", "incidents", "webhooks", "noise_models",
    # Audio: analyses (with predictions), classifier inputs and labels, fingerprints.
    "audio_analyses", "audio_inputs", "fingerprints",
)  # fmt: skip
Progress = Callable[[int], None]


async def has_catalogue(storage: Storage, tenant_id: str) -> bool:
    return await storage.db["tracks"].find_one(tenant_scope(tenant_id), {"_id": 1}) is not None


async def delete_tenant_data(storage: Storage, tenant_id: str) -> None:
    for name in TENANT_COLLECTIONS:
        await storage.db[name].delete_many(tenant_scope(tenant_id))


def demo_item_count(size: DemoSize) -> int:
    return size.artists + size.tracks + size.listeners + size.listens


async def seed_demo(
    storage: Storage,
    tenant_id: str,
    name: str = "Demo Records",
    size: DemoSize | None = None,
    seed: int = 7,
    progress: Progress | None = None,
) -> Demo:
    """Register the tenant and store a generated catalogue and listening history."""
    step = progress or (lambda _n: None)
    await storage.ensure_indexes()
    await storage.tenants.create(Tenant(id=tenant_id, name=name))
    demo = generate_demo(size or DemoSize(), seed=seed)
    # The tenant's catalogue is empty (callers check), so plain inserts are safe.
    await storage.artists.insert_new(tenant_id, demo.artists)
    step(len(demo.artists))
    await storage.tracks.insert_new(tenant_id, demo.tracks)
    step(len(demo.tracks))
    await storage.listeners.insert_new(tenant_id, demo.listeners)
    step(len(demo.listeners))
    for start in range(0, len(demo.listens), CHUNK):
        chunk = demo.listens[start : start + CHUNK]
        await storage.listens.insert_many(tenant_id, chunk)
        step(len(chunk))
    await AnalyticsRepository(storage.db).bump(tenant_id)  # cached analytics are stale
    return demo
