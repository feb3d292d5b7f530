"""The model registry's vocabulary: model kinds, version and job states, and what a trainer is.

Every trained model is a versioned entry of one tenant and kind; a training job produces
one. A kind plugs in by registering a `Trainer` (see tunelytics/training.py): how to read
its training data, how to fit it (CPU-heavy, run off the event loop), how to load an
artifact back. Nothing here knows GraphQL or MongoDB.

>>> ModelStatus.READY.servable, ModelStatus.TRAINING.servable
(True, False)
>>> ModelStatus.ACTIVE.servable, ModelStatus.FAILED.servable
(True, False)
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar


class ModelKind(enum.StrEnum):
    """What a model does. Add a member for a new kind, and register its Trainer."""

    RECOMMENDER = "recommender"
    CHURN = "churn"
    POPULARITY = "popularity"
    GENRE = "genre"
    MOOD = "mood"


class ModelStatus(enum.StrEnum):
    TRAINING = "training"
    READY = "ready"  # trained, never served or not served now
    FAILED = "failed"
    ACTIVE = "active"  # the version every replica serves
    RETIRED = "retired"  # was active; kept for rollback

    @property
    def servable(self) -> bool:
        """Whether this version may be activated."""
        return self in (ModelStatus.READY, ModelStatus.ACTIVE, ModelStatus.RETIRED)


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED)


@dataclass(frozen=True, slots=True)
class DataWindow:
    """The time span of the data a model learned from."""

    start: datetime | None
    end: datetime | None
    items: int = 0


@dataclass(slots=True)
class ModelVersion:
    tenant_id: str
    kind: ModelKind
    version: int
    status: ModelStatus
    created_at: datetime
    created_by: str
    job_id: str
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    data_window: DataWindow | None = None
    # Seconds per phase: read, fit, store.
    timings: dict[str, float] = field(default_factory=dict)
    artifact_id: str | None = None
    artifact_bytes: int = 0
    activated_at: datetime | None = None
    error: str | None = None


@dataclass(slots=True)
class Job:
    id: str
    tenant_id: str
    kind: ModelKind
    status: JobStatus
    created_at: datetime
    created_by: str
    progress: float = 0.0
    message: str = ""
    model_version: int | None = None
    activate: bool = False
    error: str | None = None
    updated_at: datetime | None = None


# Called from the training thread with (fraction done 0..1, what is happening).
Progress = Callable[[float, str], None]


class TrainedModel(Protocol):
    """What every kind's trained model offers the registry."""

    @property
    def metrics(self) -> dict[str, float]: ...

    def to_bytes(self) -> bytes: ...


class TrainingFailed(Exception):
    """Training cannot go on (too little data, say); the message is shown to the caller."""


D = TypeVar("D")
M = TypeVar("M", bound=TrainedModel)
S = TypeVar("S")


@dataclass(frozen=True)
class Trainer(Generic[D, M, S]):
    """How one model kind is trained and loaded.

    - `read(source, tenant_id)`: the tenant's training data (async: it reads the database
      through whatever `source` the caller passes, storage in the app and the CLI).
    - `fit(data, params, progress)`: the CPU-heavy part, run in a worker thread.
    - `window(data)`: the data window recorded with the version.
    - `load(artifact)`: bytes from the artifact store back to a servable model.
    """

    kind: ModelKind
    read: Callable[[S, str], Awaitable[D]]
    fit: Callable[[D, dict[str, Any], Progress], M]
    load: Callable[[bytes], M]
    window: Callable[[D], DataWindow] = lambda _data: DataWindow(None, None)
    params: dict[str, Any] = field(default_factory=dict)
