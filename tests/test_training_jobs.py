"""Training jobs whose process died: a running job keeps its document fresh (heartbeat),
and the sweep fails the ones that went silent, with their versions, tells subscribers,
and leaves live jobs and other tenants' jobs alone."""

from __future__ import annotations

import asyncio
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tunelytics.domain.models import (
    DataWindow,
    Job,
    JobStatus,
    ModelKind,
    ModelStatus,
    ModelVersion,
    Progress,
    Trainer,
)
from tunelytics.pubsub import LocalBroadcaster
from tunelytics.services import training as training_module
from tunelytics.services.training import JOB_SILENT_AFTER, TrainingService, job_channel
from tunelytics.storage import Storage


async def running_job(storage: Storage, tenant: str, silent_for: timedelta) -> Job:
    """A job as a training process leaves it mid-way: RUNNING, a TRAINING version."""
    job = await storage.jobs.create(tenant, ModelKind.CHURN, "test")
    version = await storage.models.next_version(tenant, ModelKind.CHURN)
    await storage.models.insert(
        ModelVersion(
            tenant_id=tenant,
            kind=ModelKind.CHURN,
            version=version,
            status=ModelStatus.TRAINING,
            created_at=datetime.now(UTC),
            created_by="test",
            job_id=job.id,
        )
    )
    await storage.jobs.update(tenant, job.id, status=JobStatus.RUNNING, model_version=version)
    last_heard = datetime.now(UTC) - silent_for
    await storage.db["jobs"].update_one(
        {"tenant_id": tenant, "created_by": "test", "model_version": version},
        {"$set": {"updated_at": last_heard}},
    )
    job.model_version = version
    return job


async def test_silent_jobs_fail_with_their_versions(storage: Storage) -> None:
    tenant, other = (f"t-{uuid.uuid4().hex[:10]}" for _ in range(2))
    dead = await running_job(storage, tenant, silent_for=JOB_SILENT_AFTER * 3)
    alive = await running_job(storage, tenant, silent_for=timedelta(seconds=5))
    elsewhere = await running_job(storage, other, silent_for=JOB_SILENT_AFTER * 2)
    broadcaster = LocalBroadcaster()
    await broadcaster.start()
    service = TrainingService(storage, broadcaster, {})
    try:
        async with broadcaster.subscribe(job_channel(tenant, dead.id)) as events:
            expired = await service.expire_silent()
            event = await asyncio.wait_for(events.get(), 5)
        assert {(j.tenant_id, j.id) for j in expired} >= {
            (tenant, dead.id),
            (other, elsewhere.id),
        }
        assert (tenant, alive.id) not in {(j.tenant_id, j.id) for j in expired}
        assert event["status"] == "failed" and "interrupted" in event["error"]

        for job, status, model_status in (
            (dead, JobStatus.FAILED, ModelStatus.FAILED),
            (elsewhere, JobStatus.FAILED, ModelStatus.FAILED),
            (alive, JobStatus.RUNNING, ModelStatus.TRAINING),
        ):
            found = await storage.jobs.get(job.tenant_id, job.id)
            assert found is not None and found.status == status, found
            assert job.model_version is not None
            model = await storage.models.get(job.tenant_id, job.kind, job.model_version)
            assert model is not None and model.status == model_status, model
        failed = await storage.models.get(tenant, ModelKind.CHURN, dead.model_version or 0)
        assert failed is not None and failed.error and "train again" in failed.error

        # A second pass finds nothing new: each job is failed once.
        again = await service.expire_silent()
        assert not {(j.tenant_id, j.id) for j in again} & {(tenant, dead.id)}
    finally:
        await service.stop()
        await broadcaster.stop()


async def test_a_running_job_keeps_its_heartbeat(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(training_module, "HEARTBEAT_S", 0.05)
    tenant = f"t-{uuid.uuid4().hex[:10]}"
    release = threading.Event()

    async def read(_storage: Storage, _tenant: str) -> int:
        return 1

    def fit(_data: int, _params: dict[str, Any], _progress: Progress) -> Any:
        release.wait(10)  # a long fit that reports no progress
        raise RuntimeError("stop here")

    trainer: Trainer[int, Any, Storage] = Trainer(
        kind=ModelKind.CHURN,
        read=read,
        fit=fit,
        load=lambda _b: None,
        window=lambda _d: DataWindow(None, None),
    )
    service = TrainingService(storage, LocalBroadcaster(), {ModelKind.CHURN: trainer})
    try:
        job = await service.start(tenant, ModelKind.CHURN, "test")
        await asyncio.sleep(0.3)  # well inside the fit
        seen = await storage.jobs.get(tenant, job.id)
        assert seen is not None and seen.status == JobStatus.RUNNING and seen.updated_at
        first = seen.updated_at
        await asyncio.sleep(0.3)
        later = await storage.jobs.get(tenant, job.id)
        assert later is not None and later.updated_at and later.updated_at > first
        # Silent since an instant before now would need no beat for that long: not failed.
        assert job.id not in {j.id for j in await service.expire_silent()}
    finally:
        release.set()
        await asyncio.gather(*service.running)
        await service.stop()
    done = await storage.jobs.get(tenant, job.id)
    assert done is not None and done.status == JobStatus.FAILED
    assert "stop here" in (done.error or "")
