"""Audio analyses, landmark fingerprints and track embeddings of each tenant."""

from __future__ import annotations

import dataclasses
from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase

from tunelytics.domain.audio.analysis import AudioAnalysis, FeatureSummary
from tunelytics.domain.audio.fingerprint import Match
from tunelytics.domain.audio.quality import QualityReport
from tunelytics.storage.scope import document_key, tenant_scope

Document = dict[str, Any]

INDEXES: dict[str, list[IndexModel]] = {
    # Identification asks for a clip's hashes: tenant first, then the hash.
    "fingerprints": [
        IndexModel([("tenant_id", ASCENDING), ("hash", ASCENDING)]),
        IndexModel([("tenant_id", ASCENDING), ("track_id", ASCENDING)]),
    ],
    # Analyses are keyed "<tenant>/<track>" on _id; this serves per-tenant listings.
    "audio_analyses": [IndexModel([("tenant_id", ASCENDING), ("track_id", ASCENDING)])],
}

LOOKUP_CHUNK = 1000


class AudioStore:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.fingerprints = db["fingerprints"]
        self.analyses = db["audio_analyses"]
        self.tracks = db["tracks"]

    async def lookup(self, tenant_id: str, hashes: set[int]) -> list[tuple[int, str, int]]:
        rows: list[tuple[int, str, int]] = []
        ordered = sorted(hashes)
        for first in range(0, len(ordered), LOOKUP_CHUNK):
            chunk = ordered[first : first + LOOKUP_CHUNK]
            cursor = self.fingerprints.find(
                tenant_scope(tenant_id, hash={"$in": chunk}),
                {"_id": 0, "hash": 1, "track_id": 1, "t": 1, "tenant_id": 1},
            )
            rows += [
                (doc["hash"], doc["track_id"], doc["t"])
                async for doc in cursor
                if doc["tenant_id"] == tenant_id
            ]
        return rows

    async def replace_fingerprints(
        self, tenant_id: str, track_id: str, hashes: list[tuple[int, int]]
    ) -> None:
        await self.fingerprints.delete_many(tenant_scope(tenant_id, track_id=track_id))
        docs = [
            {"tenant_id": tenant_id, "hash": h, "track_id": track_id, "t": t} for h, t in hashes
        ]
        for first in range(0, len(docs), 5000):
            await self.fingerprints.insert_many(docs[first : first + 5000], ordered=False)

    async def save(self, tenant_id: str, analysis: AudioAnalysis) -> None:
        doc = dataclasses.asdict(analysis)
        doc.update(_id=document_key(tenant_id, analysis.track_id), tenant_id=tenant_id)
        await self.analyses.replace_one({"_id": doc["_id"]}, doc, upsert=True)
        # The track carries its sound embedding for similarity and the recommender.
        await self.tracks.update_one(
            {"_id": document_key(tenant_id, analysis.track_id), "tenant_id": tenant_id},
            {"$set": {"audio_embedding": analysis.embedding}},
        )

    async def analysis(self, tenant_id: str, track_id: str) -> AudioAnalysis | None:
        doc = await self.analyses.find_one({"_id": document_key(tenant_id, track_id)})
        if doc is None or doc.get("tenant_id") != tenant_id:
            return None
        return _analysis(doc)


def _match(doc: Document | None) -> Match | None:
    return None if doc is None else Match(**doc)


def _analysis(doc: Document) -> AudioAnalysis:
    fields = {f.name for f in dataclasses.fields(AudioAnalysis)}
    values = {k: v for k, v in doc.items() if k in fields}
    values["features"] = FeatureSummary(**doc["features"])
    values["quality"] = QualityReport(**doc["quality"])
    values["identified"] = _match(doc.get("identified"))
    values["duplicates"] = [Match(**m) for m in doc.get("duplicates", [])]
    return AudioAnalysis(**values)
