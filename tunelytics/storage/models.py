"""The model registry (`models`), training jobs (`jobs`) and model artifacts (GridFS).

Versions are numbered per tenant and kind by an atomic counter (`counters`), so two jobs
finishing together never share a number. Artifacts are GridFS files in the `artifacts`
bucket whose metadata carries the tenant; they are only ever opened by the ID stored in
the tenant's own registry entry, and the tenant is checked again on read.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId
from bson.errors import InvalidId
from gridfs import AsyncGridFSBucket, NoFile
from pymongo import ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from tunelytics.domain.models import (
    DataWindow,
    Job,
    JobStatus,
    ModelKind,
    ModelStatus,
    ModelVersion,
)
from tunelytics.storage.dates import stored_datetime
from tunelytics.storage.scope import document_key, tenant_scope

Document = dict[str, Any]


def _version_key(tenant_id: str, kind: ModelKind, version: int) -> Document:
    """The filter of one version: its `_id` (as `_version_doc` writes it), and the tenant."""
    return {"_id": document_key(tenant_id, f"{kind.value}:{version}"), **tenant_scope(tenant_id)}


def _version_doc(model: ModelVersion) -> Document:
    doc = asdict(model)
    doc["kind"] = model.kind.value
    doc["status"] = model.status.value
    doc["_id"] = document_key(model.tenant_id, f"{model.kind.value}:{model.version}")
    return doc


def _version(doc: Document) -> ModelVersion:
    window = doc.get("data_window")
    return ModelVersion(
        tenant_id=doc["tenant_id"],
        kind=ModelKind(doc["kind"]),
        version=doc["version"],
        status=ModelStatus(doc["status"]),
        created_at=doc["created_at"],
        created_by=doc["created_by"],
        job_id=doc["job_id"],
        params=doc.get("params") or {},
        metrics=doc.get("metrics") or {},
        data_window=DataWindow(**window) if window else None,
        timings=doc.get("timings") or {},
        artifact_id=doc.get("artifact_id"),
        artifact_bytes=doc.get("artifact_bytes", 0),
        activated_at=stored_datetime(doc.get("activated_at")),
        error=doc.get("error"),
    )


class ModelRepository:
    def __init__(self, collection: AsyncCollection[Document], counters: AsyncCollection[Document]):
        self.collection = collection
        self.counters = counters

    async def next_version(self, tenant_id: str, kind: ModelKind) -> int:
        counter = await self.counters.find_one_and_update(
            {"_id": document_key(tenant_id, f"models:{kind.value}")},
            {"$inc": {"value": 1}, "$setOnInsert": {"tenant_id": tenant_id}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        assert counter is not None
        return int(counter["value"])

    async def insert(self, model: ModelVersion) -> None:
        await self.collection.insert_one(_version_doc(model))

    async def update(self, tenant_id: str, kind: ModelKind, version: int, **fields: Any) -> None:
        changes = {
            k: (
                v.value
                if isinstance(v, ModelStatus)
                else asdict(v)
                if isinstance(v, DataWindow)
                else v
            )
            for k, v in fields.items()
        }
        await self.collection.update_one(
            _version_key(tenant_id, kind, version),
            {"$set": changes},
        )

    async def get(self, tenant_id: str, kind: ModelKind, version: int) -> ModelVersion | None:
        doc = await self.collection.find_one(_version_key(tenant_id, kind, version))
        return _version(doc) if doc else None

    async def list(self, tenant_id: str, kind: ModelKind, limit: int = 100) -> list[ModelVersion]:
        """Newest first."""
        cursor = (
            self.collection.find(tenant_scope(tenant_id, kind={"$eq": kind.value}))
            .sort("version", -1)
            .limit(limit)
        )
        return [_version(doc) async for doc in cursor]

    async def active(self, tenant_id: str, kind: ModelKind) -> ModelVersion | None:
        """The served version: the most recently activated one still marked active."""
        docs = await (
            self.collection.find(
                tenant_scope(tenant_id, kind={"$eq": kind.value}, status={"$eq": "active"})
            )
            .sort("activated_at", -1)
            .limit(1)
            .to_list()
        )
        return _version(docs[0]) if docs else None

    async def activate(self, tenant_id: str, kind: ModelKind, version: int) -> datetime:
        """Mark `version` active and the previously active ones retired (kept for rollback)."""
        key = _version_key(tenant_id, kind, version)
        activated = await self.collection.find_one_and_update(
            key,
            {"$set": {"status": ModelStatus.ACTIVE.value}, "$currentDate": {"activated_at": True}},
            return_document=ReturnDocument.AFTER,
        )
        now = stored_datetime((activated or {}).get("activated_at")) or datetime.now(UTC)
        await self.collection.update_many(
            tenant_scope(
                tenant_id,
                kind={"$eq": kind.value},
                status={"$eq": "active"},
                version={"$ne": version},
            ),
            {"$set": {"status": ModelStatus.RETIRED.value}},
        )
        return now


UNFINISHED = [JobStatus.QUEUED.value, JobStatus.RUNNING.value]


def _job(doc: Document) -> Job:
    return Job(
        id=str(doc["_id"]),
        tenant_id=doc["tenant_id"],
        kind=ModelKind(doc["kind"]),
        status=JobStatus(doc["status"]),
        created_at=doc["created_at"],
        created_by=doc["created_by"],
        progress=doc.get("progress", 0.0),
        message=doc.get("message", ""),
        model_version=doc.get("model_version"),
        activate=doc.get("activate", False),
        error=doc.get("error"),
        updated_at=stored_datetime(doc.get("updated_at")),
    )


def _object_id(value: str) -> ObjectId | None:
    try:
        return ObjectId(value)
    except (InvalidId, TypeError):
        return None


class JobRepository:
    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self.collection = collection

    async def create(
        self, tenant_id: str, kind: ModelKind, created_by: str, activate: bool = False
    ) -> Job:
        now = datetime.now(UTC)
        oid = ObjectId()
        job = Job(
            id=str(oid),
            tenant_id=tenant_id,
            kind=kind,
            status=JobStatus.QUEUED,
            created_at=now,
            created_by=created_by,
            activate=activate,
            message="queued",
            updated_at=now,
        )
        doc = {
            **asdict(job),
            "_id": oid,
            "kind": kind.value,
            "status": job.status.value,
            "revision": 0,
        }
        del doc["id"]
        await self.collection.insert_one(doc)
        return job

    async def update(self, tenant_id: str, job_id: str, **fields: Any) -> None:
        oid = _object_id(job_id)
        if oid is None:
            return
        changes = {k: (v.value if isinstance(v, JobStatus) else v) for k, v in fields.items()}
        # The server's clock, and a date on both servers ($set of a date: compat p).
        update: Document = {"$inc": {"revision": 1}, "$currentDate": {"updated_at": True}}
        if changes:
            update["$set"] = changes
        await self.collection.update_one({"_id": oid, **tenant_scope(tenant_id)}, update)

    async def get(self, tenant_id: str, job_id: str) -> Job | None:
        oid = _object_id(job_id)
        if oid is None:
            return None
        doc = await self.collection.find_one({"_id": oid, **tenant_scope(tenant_id)})
        return _job(doc) if doc else None

    async def fail_silent(self, before: datetime, message: str) -> list[Job]:
        """Fail the unfinished jobs of every tenant not updated since `before` (their
        process died) and return them: a maintenance write, for the sweep in
        services/training.py. A job updated meanwhile (its process is alive after all, or
        another replica's sweep got it) is left as it is: the update is conditional on the
        job's revision, which every update bumps."""
        # Silence is judged here, not in the filter: a date range beside other conditions
        # matches nothing on nx-27017 (docs/mongodb-compat.md p). Few jobs are unfinished.
        unfinished = await self.collection.find(
            {"status": {"$in": UNFINISHED}}, {"_id": 1, "updated_at": 1, "revision": 1}
        ).to_list()
        failed: list[Job] = []
        for doc in unfinished:
            heard = stored_datetime(doc.get("updated_at"))
            if heard is not None and heard >= before:
                continue
            found = await self.collection.find_one_and_update(
                {
                    "_id": doc["_id"],
                    "status": {"$in": UNFINISHED},
                    # Jobs written before revisions have none: {$in: [None]} (compat l).
                    "revision": {"$in": [None]}
                    if doc.get("revision") is None
                    else {"$eq": doc["revision"]},
                },
                {
                    "$set": {
                        "status": JobStatus.FAILED.value,
                        "error": message,
                        "message": message,
                    },
                    "$inc": {"revision": 1},
                    "$currentDate": {"updated_at": True},
                },
                return_document=ReturnDocument.AFTER,
            )
            if found is not None:
                failed.append(_job(found))
        return failed


class ArtifactStore:
    """Model artifacts as GridFS files, tagged with their tenant."""

    def __init__(self, db: AsyncDatabase[Document], bucket: str = "artifacts") -> None:
        self.bucket = AsyncGridFSBucket(db, bucket_name=bucket)
        self.files = db[f"{bucket}.files"]

    async def put(self, tenant_id: str, name: str, data: bytes) -> str:
        file_id = await self.bucket.upload_from_stream(
            f"{tenant_id}/{name}", data, metadata={"tenant_id": tenant_id}
        )
        return str(file_id)

    async def get(self, tenant_id: str, artifact_id: str) -> bytes | None:
        oid = _object_id(artifact_id)
        if oid is None:
            return None
        owned = await self.files.find_one({"_id": oid, "metadata.tenant_id": tenant_id}, {"_id": 1})
        if owned is None:
            return None
        try:
            stream = await self.bucket.open_download_stream(oid)
        except NoFile:
            return None
        data: bytes = await stream.read()
        return data

    async def delete(self, tenant_id: str, artifact_id: str) -> None:
        oid = _object_id(artifact_id)
        if oid is not None and await self.files.find_one(
            {"_id": oid, "metadata.tenant_id": tenant_id}, {"_id": 1}
        ):
            await self.bucket.delete(oid)
