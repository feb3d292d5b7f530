"""Training jobs: one code path for the trainModel mutation, the CLI and the demo.

A job reads the tenant's data (async, bounded reads), fits the model in a worker thread so
the event loop keeps serving, stores the artifact in GridFS and the version in the
registry, and reports progress on the job document and on the job's pub/sub channel
(`trainingProgress`). Any failure marks both the job and the version failed, with a
message the caller can read; the traceback goes to the log only.

Activation (`activate`) marks a version active in the registry and announces it on
MODELS_CHANNEL, which every replica's ModelServer (serving.py) listens to. The replica
that activates also switches its own server before answering (`switch`), so whoever
activated, or waited for a job that activates, is served the new version at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from tunelytics.domain.models import (
    Job,
    JobStatus,
    ModelKind,
    ModelStatus,
    ModelVersion,
    Trainer,
    TrainingFailed,
)
from tunelytics.pubsub import Broadcaster
from tunelytics.storage import Storage

log = logging.getLogger(__name__)
MODELS_CHANNEL = "models:activations"
# Progress reaches the job document and subscribers at most this often.
PROGRESS_INTERVAL_S = 0.1
# A running job's document is touched this often, so a job whose process died (killed,
# out of memory, the machine gone) is told from a slow one: silent for JOB_SILENT_AFTER,
# the sweep fails it and its version, instead of "still training" forever.
HEARTBEAT_S = 15.0
JOB_SILENT_AFTER = timedelta(seconds=90)
SWEEP_EVERY_S = 60.0
AnyTrainer = Trainer[Any, Any, Storage]
Observer = Callable[[Job], None]


def job_channel(tenant_id: str, job_id: str) -> str:
    return f"tenant:{tenant_id}:jobs:{job_id}"


def job_event(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "kind": job.kind.value,
        "status": job.status.value,
        "progress": job.progress,
        "message": job.message,
        "model_version": job.model_version,
        "error": job.error,
        "created_at": job.created_at.isoformat(),
        "created_by": job.created_by,
    }


def job_from_event(tenant_id: str, event: Mapping[str, Any]) -> Job:
    return Job(
        id=event["id"],
        tenant_id=tenant_id,
        kind=ModelKind(event["kind"]),
        status=JobStatus(event["status"]),
        created_at=datetime.fromisoformat(event["created_at"]),
        created_by=event["created_by"],
        progress=event["progress"],
        message=event["message"],
        model_version=event["model_version"],
        error=event["error"],
    )


def _split_metrics(values: dict[str, Any]) -> tuple[dict[str, float], dict[str, Any]]:
    """Numbers are metrics; anything else a model reports (the split used) is a note."""
    metrics = {
        k: float(v)
        for k, v in values.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }
    return metrics, {k: v for k, v in values.items() if k not in metrics}


def _plain(value: Any) -> Any:
    """JSON-shaped (numpy numbers, tuples and the like become plain), storable as BSON."""
    return json.loads(
        json.dumps(value, default=lambda v: v.item() if hasattr(v, "item") else str(v))
    )


class NotActivatable(Exception):
    """The version does not exist or cannot be served (still training, failed)."""

    def __init__(self, message: str, missing: bool = False) -> None:
        super().__init__(message)
        self.missing = missing


# Serve (tenant, kind, version) in this process now: ModelServer.switch.
Switch = Callable[[str, ModelKind, int], Awaitable[None]]


async def activate(
    storage: Storage,
    broadcaster: Broadcaster,
    tenant_id: str,
    kind: ModelKind,
    version: int,
    switch: Switch | None = None,
) -> ModelVersion:
    """Serve `version` from now on, on every replica; the one it replaces stays for rollback.
    With `switch`, this replica serves it before this returns (the others on the announcement)."""
    model = await storage.models.get(tenant_id, kind, version)
    if model is None:
        raise NotActivatable(f"no {kind.value} version {version}", missing=True)
    if not model.status.servable:
        raise NotActivatable(
            f"{kind.value} version {version} is {model.status.value}; only a trained version "
            "can be activated"
        )
    model.activated_at = await storage.models.activate(tenant_id, kind, version)
    model.status = ModelStatus.ACTIVE
    await broadcaster.publish(
        MODELS_CHANNEL, {"tenant_id": tenant_id, "kind": kind.value, "version": version}
    )
    if switch is not None:
        await switch(tenant_id, kind, version)
    log.info("model activated", extra={"tenant": tenant_id, "kind": kind.value, "version": version})
    return model


class _ProgressPump:
    """Carries progress from the training thread to the loop, coalesced: the newest state
    is written and published at most every PROGRESS_INTERVAL_S, never a backlog."""

    def __init__(self, push: Callable[[float, str], Awaitable[None]]) -> None:
        self.loop = asyncio.get_running_loop()
        self.push = push
        self.latest: tuple[float, str] | None = None
        self.task: asyncio.Task[None] | None = None

    def from_thread(self, fraction: float, message: str) -> None:
        self.loop.call_soon_threadsafe(self.offer, fraction, message)

    def offer(self, fraction: float, message: str) -> None:
        self.latest = (fraction, message)
        if self.task is None or self.task.done():
            self.task = self.loop.create_task(self._drain())

    async def _drain(self) -> None:
        while self.latest is not None:
            fraction, message = self.latest
            self.latest = None
            await self.push(fraction, message)
            await asyncio.sleep(PROGRESS_INTERVAL_S)

    async def flush(self) -> None:
        if self.task is not None:
            with contextlib.suppress(Exception):
                await self.task


class TrainingService:
    """Starts and runs training jobs for the kinds it has a Trainer for."""

    def __init__(
        self,
        storage: Storage,
        broadcaster: Broadcaster,
        trainers: Mapping[ModelKind, AnyTrainer],
        switch: Switch | None = None,
    ) -> None:
        self.storage = storage
        self.broadcaster = broadcaster
        self.trainers = dict(trainers)
        self.switch = switch
        # One fit at a time per process: two would only halve each other's cores.
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="train")
        self.running: set[asyncio.Task[Job]] = set()

    def trainer(self, kind: ModelKind) -> AnyTrainer:
        try:
            return self.trainers[kind]
        except KeyError:
            raise TrainingFailed(f"no trainer is registered for {kind.value}") from None

    async def start(
        self,
        tenant_id: str,
        kind: ModelKind,
        created_by: str,
        activate: bool = False,
        observe: Observer | None = None,
        params: dict[str, Any] | None = None,
    ) -> Job:
        """Create the job and run it in the background; returns the queued job at once.
        `params` override the trainer's defaults for this job."""
        self.trainer(kind)
        job = await self.storage.jobs.create(tenant_id, kind, created_by, activate)
        task = asyncio.create_task(self.run(job, observe, params), name=f"train-{job.id}")
        self.running.add(task)
        task.add_done_callback(self.running.discard)
        return job

    async def run(
        self, job: Job, observe: Observer | None = None, overrides: dict[str, Any] | None = None
    ) -> Job:
        """Run a job to its end (the CLI awaits this directly). Never raises for a failed
        training: the job comes back FAILED with its error."""
        trainer = self.trainer(job.kind)
        tenant = job.tenant_id
        timings: dict[str, float] = {}
        version: int | None = None
        params: dict[str, Any] = {**trainer.params, **(overrides or {})}

        async def report(progress: float, message: str, **fields: Any) -> None:
            job.progress = round(min(max(progress, 0.0), 1.0), 4)
            job.message = message
            for name, value in fields.items():
                setattr(job, name, value)
            await self.storage.jobs.update(
                tenant,
                job.id,
                progress=job.progress,
                message=message,
                **{k: (v.value if isinstance(v, JobStatus) else v) for k, v in fields.items()},
            )
            await self.broadcaster.publish(job_channel(tenant, job.id), job_event(job))
            if observe is not None:
                observe(job)

        pump = _ProgressPump(lambda f, m: report(0.1 + 0.8 * f, m))
        heartbeat = asyncio.create_task(self._heartbeat(job), name=f"heartbeat-{job.id}")
        try:
            version = await self.storage.models.next_version(tenant, job.kind)
            await self.storage.models.insert(
                ModelVersion(
                    tenant_id=tenant,
                    kind=job.kind,
                    version=version,
                    status=ModelStatus.TRAINING,
                    created_at=datetime.now(UTC),
                    created_by=job.created_by,
                    job_id=job.id,
                    params=_plain(params),
                )
            )
            await report(0.0, "reading data", status=JobStatus.RUNNING, model_version=version)
            started = time.perf_counter()
            data = await trainer.read(self.storage, tenant)
            timings["read_s"] = round(time.perf_counter() - started, 3)
            window = trainer.window(data)
            await report(0.1, f"read {window.items} items")

            started = time.perf_counter()
            loop = asyncio.get_running_loop()

            def fit() -> tuple[Any, bytes]:
                model = trainer.fit(data, params, pump.from_thread)
                return model, model.to_bytes()

            model, artifact = await loop.run_in_executor(self.executor, fit)
            timings["fit_s"] = round(time.perf_counter() - started, 3)
            await pump.flush()
            await report(0.9, "storing the model")

            started = time.perf_counter()
            name = f"{job.kind.value}/{version}"
            artifact_id = await self.storage.artifacts.put(tenant, name, artifact)
            timings["store_s"] = round(time.perf_counter() - started, 3)
            metrics, notes = _split_metrics(dict(model.metrics))
            params = _plain({**params, **dict(getattr(model, "parameters", {})), **notes})
            await self.storage.models.update(
                tenant,
                job.kind,
                version,
                status=ModelStatus.READY,
                metrics=metrics,
                params=params,
                data_window=window,
                timings=timings,
                artifact_id=artifact_id,
                artifact_bytes=len(artifact),
            )
            if job.activate:
                await activate(
                    self.storage, self.broadcaster, tenant, job.kind, version, self.switch
                )
            await report(1.0, "done", status=JobStatus.SUCCEEDED)
            log.info(
                "model trained",
                extra={"tenant": tenant, "kind": job.kind.value, "version": version, **timings},
            )
        except asyncio.CancelledError:
            await self._fail(job, version, "interrupted: the server stopped", report)
            raise
        except Exception as error:
            await pump.flush()
            if isinstance(error, TrainingFailed):
                message = str(error)
            else:
                log.exception("training failed", extra={"tenant": tenant, "job": job.id})
                message = f"training failed: {type(error).__name__}: {error}"
            await self._fail(job, version, message, report)
        finally:
            heartbeat.cancel()
        return job

    async def _heartbeat(self, job: Job) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            with contextlib.suppress(Exception):  # a missed beat is retried, not fatal
                await self.storage.jobs.update(job.tenant_id, job.id)

    async def expire_silent(self, now: datetime | None = None) -> list[Job]:
        """Fail the jobs (of any tenant, on any replica) whose process stopped reporting,
        and their versions; subscribers get the failure. Returns the jobs it failed."""
        before = (now or datetime.now(UTC)) - JOB_SILENT_AFTER
        message = "interrupted: the process running it stopped; train again"
        expired = await self.storage.jobs.fail_silent(before, message)
        for job in expired:
            if job.model_version is not None:
                found = await self.storage.models.get(job.tenant_id, job.kind, job.model_version)
                if found is not None and found.status == ModelStatus.TRAINING:
                    await self.storage.models.update(
                        job.tenant_id,
                        job.kind,
                        job.model_version,
                        status=ModelStatus.FAILED,
                        error=message,
                    )
            await self.broadcaster.publish(job_channel(job.tenant_id, job.id), job_event(job))
            log.warning(
                "failed a silent training job",
                extra={"tenant": job.tenant_id, "job": job.id, "kind": job.kind.value},
            )
        return expired

    async def sweep(self, on_expired: Callable[[list[Job]], Awaitable[None]] | None = None) -> None:
        """expire_silent every SWEEP_EVERY_S, for as long as the server runs."""
        while True:
            try:
                expired = await self.expire_silent()
                if expired and on_expired is not None:
                    await on_expired(expired)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("the training job sweep failed; retrying")
            await asyncio.sleep(SWEEP_EVERY_S)

    async def _fail(
        self,
        job: Job,
        version: int | None,
        message: str,
        report: Callable[..., Awaitable[None]],
    ) -> None:
        with contextlib.suppress(Exception):
            if version is not None:
                await self.storage.models.update(
                    job.tenant_id, job.kind, version, status=ModelStatus.FAILED, error=message
                )
            await report(job.progress, message, status=JobStatus.FAILED, error=message)

    async def stop(self) -> None:
        for task in list(self.running):
            task.cancel()
        for task in list(self.running):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.executor.shutdown(wait=False, cancel_futures=True)


# The demo's model is trained at first start, while someone waits for GraphiQL: a lighter
# configuration (no ALS, which adds little on the demo data, and a smaller blend sample)
# trains in a fraction of the time (docs/benchmarks.md). No following view either: the
# demo's listens do not depend on whom a listener follows (only on taste, which genres
# already tell), so it earned a weight of 0.04 for +0.001 hold-out NDCG@10 and 2.4 s more,
# and it shifted the blend towards genres: nine in ten reasons became "same genres as".
DEMO_PARAMS: dict[ModelKind, dict[str, Any]] = {
    ModelKind.RECOMMENDER: {
        "components": ["ease", "genre", "artist", "audio", "popularity"],
        "blend_listeners": 256,
        "blend_steps": 20,
    }
}


def progress_logger(step: float = 0.25) -> Observer:
    """Logs a job's progress every `step` and its end (the demo's training at start-up)."""
    logged = [-1.0]

    def observe(job: Job) -> None:
        if job.status.finished or job.progress >= logged[0] + step:
            logged[0] = job.progress
            log.info(
                "training %s: %d%% %s",
                job.kind.value,
                round(job.progress * 100),
                job.message,
                extra={"tenant": job.tenant_id, "job": job.id, "status": job.status.value},
            )

    return observe


async def train_demo_model(
    training: TrainingService, tenant_id: str, kind: ModelKind = ModelKind.RECOMMENDER
) -> Job | None:
    """Train and activate a model of `kind` for the demo tenant if it has none (nor one on
    the way), in the background: the API is up at once and serves it when it is ready."""
    try:
        if await training.storage.tenants.get(tenant_id) is None:
            return None
        versions = await training.storage.models.list(tenant_id, kind, limit=1)
        if versions and versions[0].status != ModelStatus.FAILED:
            return None
        job = await training.start(
            tenant_id,
            kind,
            "serve",
            activate=True,
            observe=progress_logger(),
            params=DEMO_PARAMS.get(kind),
        )
    except Exception:
        log.exception("cannot train the demo %s", kind.value)
        return None
    log.info("training the demo %s in the background", kind.value, extra={"job": job.id})
    return job
