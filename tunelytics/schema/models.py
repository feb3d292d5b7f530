"""The model registry's GraphQL surface: models, job, trainModel, activateModel,
trainingProgress."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from datetime import datetime
from enum import Enum
from typing import cast

import strawberry
from strawberry import Info
from strawberry.scalars import JSON

from tunelytics.domain import models as domain
from tunelytics.resolvers import models as resolvers
from tunelytics.resolvers.context import Context

CtxInfo = Info[Context, None]


@strawberry.enum(description="What a model does.")
class ModelKind(Enum):
    RECOMMENDER = "recommender"
    CHURN = "churn"
    POPULARITY = "popularity"
    GENRE = "genre"
    MOOD = "mood"

    def to_domain(self) -> domain.ModelKind:
        return domain.ModelKind(self.value)


@strawberry.enum
class ModelStatus(Enum):
    TRAINING = "training"
    READY = "ready"
    FAILED = "failed"
    ACTIVE = "active"
    RETIRED = "retired"


@strawberry.enum
class JobStatus(Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@strawberry.type
class ModelMetric:
    name: str
    value: float


@strawberry.type(description="The time span of the data a version learned from.")
class DataWindow:
    start: datetime | None
    end: datetime | None
    items: int


@strawberry.type(description="One trained version of a model kind.")
class ModelVersion:
    kind: ModelKind
    version: int
    status: ModelStatus
    created_at: datetime
    created_by: str
    activated_at: datetime | None
    job_id: strawberry.ID
    metrics: list[ModelMetric]
    params: JSON
    data_window: DataWindow | None
    timings: list[ModelMetric] = strawberry.field(description="Seconds per phase.")
    artifact_bytes: int
    error: str | None

    @classmethod
    def of(cls, model: domain.ModelVersion) -> ModelVersion:
        window = model.data_window
        return cls(
            kind=ModelKind(model.kind.value),
            version=model.version,
            status=ModelStatus(model.status.value),
            created_at=model.created_at,
            created_by=model.created_by,
            activated_at=model.activated_at,
            job_id=strawberry.ID(model.job_id),
            metrics=[ModelMetric(name=k, value=v) for k, v in sorted(model.metrics.items())],
            params=cast(JSON, model.params),
            data_window=DataWindow(start=window.start, end=window.end, items=window.items)
            if window
            else None,
            timings=[ModelMetric(name=k, value=v) for k, v in sorted(model.timings.items())],
            artifact_bytes=model.artifact_bytes,
            error=model.error,
        )


@strawberry.type(description="A training job and how far it has got.")
class TrainingJob:
    id: strawberry.ID
    kind: ModelKind
    status: JobStatus
    progress: float = strawberry.field(description="0 to 1.")
    message: str
    model_version: int | None
    error: str | None
    created_at: datetime
    created_by: str

    @classmethod
    def of(cls, job: domain.Job) -> TrainingJob:
        return cls(
            id=strawberry.ID(job.id),
            kind=ModelKind(job.kind.value),
            status=JobStatus(job.status.value),
            progress=job.progress,
            message=job.message,
            model_version=job.model_version,
            error=job.error,
            created_at=job.created_at,
            created_by=job.created_by,
        )


@strawberry.type
class ModelQuery:
    @strawberry.field(description="Versions of a model kind, newest first.")
    async def models(self, info: CtxInfo, kind: ModelKind, first: int = 20) -> list[ModelVersion]:
        found = await resolvers.models(info, kind.to_domain(), first)
        return [ModelVersion.of(m) for m in found]

    @strawberry.field(description="A version of a model kind; without `version`, the active one.")
    async def model(
        self, info: CtxInfo, kind: ModelKind, version: int | None = None
    ) -> ModelVersion | None:
        found = await resolvers.model(info, kind.to_domain(), version)
        return ModelVersion.of(found) if found else None

    @strawberry.field(description="The version this server process is serving right now.")
    async def served_model(self, info: CtxInfo, kind: ModelKind) -> ModelVersion:
        return ModelVersion.of(await resolvers.served_model(info, kind.to_domain()))

    @strawberry.field(description="A training job.")
    async def job(self, info: CtxInfo, id: strawberry.ID) -> TrainingJob:
        return TrainingJob.of(await resolvers.job(info, id))


@strawberry.type
class ModelMutation:
    @strawberry.mutation(
        description="Train a new version in the background (analysts, admins); follow it with "
        "trainingProgress(jobId). With activate, it is served once trained."
    )
    async def train_model(
        self, info: CtxInfo, kind: ModelKind, activate: bool = False
    ) -> TrainingJob:
        return TrainingJob.of(await resolvers.train_model(info, kind.to_domain(), activate))

    @strawberry.mutation(
        description="Serve this version on every replica; the one it replaces stays for rollback."
    )
    async def activate_model(self, info: CtxInfo, kind: ModelKind, version: int) -> ModelVersion:
        return ModelVersion.of(await resolvers.activate_model(info, kind.to_domain(), version))


@strawberry.type
class ModelSubscription:
    @strawberry.subscription(
        description="A training job's state now, then each change until it ends."
    )
    async def training_progress(
        self, info: CtxInfo, job_id: strawberry.ID
    ) -> AsyncGenerator[TrainingJob, None]:
        async for job in resolvers.training_progress(info, job_id):
            yield TrainingJob.of(job)
