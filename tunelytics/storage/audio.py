"""Audio analyses, landmark fingerprints, classifier inputs, labels, predictions and the
learned sound embeddings of each tenant.

Nothing here imports the audio analysis (torch, scipy) at module level: the database
module imports this one for its index definitions at every start, and the analysis types
are only needed once audio is read or written.

Per track (all keyed "<tenant>/<track>" on _id, every query also on tenant_id):
- `audio_analyses`: the analysis, plus `predictions.<kind>` (label, calibrated
  probabilities, the model version that made them) and `sound` (the active genre model's
  penultimate-layer embedding and its version), refreshed when the active version changes.
- `audio_inputs`: the classifier's input (the middle ~24 s of the log-mel, uint8-quantised)
  and the track's audio labels (`labels.genre`, `labels.mood`) that genre and mood models
  are trained on.
- `tracks.audio.embedding`: the same learned embedding on the catalogue track, where the
  recommender's content side reads it (storage/training_data.py).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from bson import Binary
from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase

from tunelytics.domain.models import DataWindow, ModelKind
from tunelytics.storage.scope import document_key, keyed, tenant_scope

if TYPE_CHECKING:
    from torch import Tensor

    from tunelytics.domain.audio.analysis import AudioAnalysis
    from tunelytics.domain.audio.classify import SoundDescription
    from tunelytics.domain.audio.fingerprint import Match
    from tunelytics.storage.database import Storage

Document = dict[str, Any]

INDEXES: dict[str, list[IndexModel]] = {
    # Identification asks for a clip's hashes: tenant first, then the hash.
    "fingerprints": [
        IndexModel([("tenant_id", ASCENDING), ("hash", ASCENDING)]),
        IndexModel([("tenant_id", ASCENDING), ("track_id", ASCENDING)]),
    ],
    # Analyses are keyed "<tenant>/<track>" on _id; this serves per-tenant listings, and
    # the second the similarity scan over one model version's embeddings.
    "audio_analyses": [
        IndexModel([("tenant_id", ASCENDING), ("track_id", ASCENDING)]),
        IndexModel([("tenant_id", ASCENDING), ("sound.version", ASCENDING)]),
    ],
    "audio_inputs": [IndexModel([("tenant_id", ASCENDING), ("track_id", ASCENDING)])],
}

LOOKUP_CHUNK = 1000
# Training reads at most this many labelled tracks (about 250 kB each in memory).
MAX_TRAINING_TRACKS = 2000
SOUND_KINDS = (ModelKind.GENRE, ModelKind.MOOD)
# The genre model's penultimate layer is the track's sound embedding.
EMBEDDING_KIND = ModelKind.GENRE


@dataclass(frozen=True)
class StoredPrediction:
    """A track's label under one model version, with its calibrated probabilities."""

    kind: ModelKind
    version: int
    label: str
    probabilities: list[tuple[str, float]]  # most probable first


@dataclass
class SoundTrainingData:
    """Labelled tracks' classifier inputs for one kind (genre or mood)."""

    track_ids: list[str]
    inputs: list[Tensor]
    labels: list[str]
    window: DataWindow


class AudioStore:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.fingerprints = db["fingerprints"]
        self.analyses = db["audio_analyses"]
        self.inputs = db["audio_inputs"]
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
        """A new analysis replaces the old one, and with it the old predictions."""
        doc = dataclasses.asdict(analysis)
        doc.update(_id=document_key(tenant_id, analysis.track_id), tenant_id=tenant_id)
        await self.analyses.replace_one({"_id": doc["_id"]}, doc, upsert=True)
        await self.tracks.update_one(
            {"_id": document_key(tenant_id, analysis.track_id), "tenant_id": tenant_id},
            {"$unset": {"audio.embedding": "", "audio.embedding_version": ""}},
        )

    async def analysis(self, tenant_id: str, track_id: str) -> AudioAnalysis | None:
        doc = await self.analyses.find_one({"_id": document_key(tenant_id, track_id)})
        if doc is None or doc.get("tenant_id") != tenant_id:
            return None
        return _analysis(doc)

    # Classifier inputs and labels.

    async def save_input(self, tenant_id: str, track_id: str, log_mel: Tensor) -> None:
        from tunelytics.domain.audio.classify import quantize_input

        codes, peak, frames = quantize_input(log_mel)
        await self.inputs.update_one(
            {"_id": document_key(tenant_id, track_id)},
            {
                "$set": {"codes": Binary(codes), "peak_db": peak, "frames": frames},
                "$setOnInsert": {"tenant_id": tenant_id, "track_id": track_id},
            },
            upsert=True,
        )

    async def inputs_of(self, tenant_id: str, track_ids: list[str]) -> dict[str, Tensor]:
        """The stored classifier inputs of these tracks (those that have one)."""
        from tunelytics.domain.audio.classify import dequantize_input

        found: dict[str, Tensor] = {}
        for first in range(0, len(track_ids), LOOKUP_CHUNK):
            chunk = track_ids[first : first + LOOKUP_CHUNK]
            cursor = self.inputs.find(
                {**keyed(tenant_id, chunk), **tenant_scope(tenant_id), "codes": {"$exists": True}}
            )
            async for doc in cursor:
                if doc["tenant_id"] == tenant_id:
                    found[doc["track_id"]] = dequantize_input(
                        bytes(doc["codes"]), doc["peak_db"], doc["frames"]
                    )
        return found

    async def set_labels(
        self, tenant_id: str, track_id: str, labels: dict[str, str | None]
    ) -> dict[str, str]:
        """Set (a string) or clear (None) labels by kind; returns the track's labels."""
        chosen = {f"labels.{k}": v for k, v in labels.items() if v is not None}
        cleared = {f"labels.{k}": "" for k, v in labels.items() if v is None}
        update: Document = {"$setOnInsert": {"tenant_id": tenant_id, "track_id": track_id}}
        if chosen:
            update["$set"] = chosen
        if cleared:
            update["$unset"] = cleared
        key = document_key(tenant_id, track_id)
        await self.inputs.update_one({"_id": key}, update, upsert=True)
        return await self.labels(tenant_id, track_id)

    async def labels(self, tenant_id: str, track_id: str) -> dict[str, str]:
        doc = await self.inputs.find_one(
            {"_id": document_key(tenant_id, track_id)}, {"tenant_id": 1, "labels": 1}
        )
        if doc is None or doc.get("tenant_id") != tenant_id:
            return {}
        return dict(doc.get("labels") or {})

    async def training_data(
        self, tenant_id: str, kind: ModelKind, limit: int = MAX_TRAINING_TRACKS
    ) -> SoundTrainingData:
        """Tracks with a stored input and a label of this kind. A genre label falls back to
        the catalogue track's first genre: a catalogue that tags genres trains as it is."""
        from tunelytics.domain.audio.classify import dequantize_input

        name = kind.value
        query = tenant_scope(tenant_id, codes={"$exists": True})
        docs = [
            doc
            async for doc in self.inputs.find(query).sort("track_id", ASCENDING)
            if doc["tenant_id"] == tenant_id
        ]
        catalogue: dict[str, str] = {}
        if kind == ModelKind.GENRE:
            unlabelled = [d["track_id"] for d in docs if not (d.get("labels") or {}).get(name)]
            for first in range(0, len(unlabelled), LOOKUP_CHUNK):
                cursor = self.tracks.find(
                    {**keyed(tenant_id, unlabelled[first : first + LOOKUP_CHUNK])},
                    {"_id": 0, "id": 1, "genres": 1, "tenant_id": 1},
                )
                async for track in cursor:
                    if track["tenant_id"] == tenant_id and track.get("genres"):
                        catalogue[track["id"]] = track["genres"][0]
        ids: list[str] = []
        inputs: list[Tensor] = []
        labels: list[str] = []
        for doc in docs:
            label = (doc.get("labels") or {}).get(name) or catalogue.get(doc["track_id"])
            if not label or len(ids) >= limit:
                continue
            ids.append(doc["track_id"])
            inputs.append(dequantize_input(bytes(doc["codes"]), doc["peak_db"], doc["frames"]))
            labels.append(label)
        return SoundTrainingData(ids, inputs, labels, DataWindow(None, None, items=len(ids)))

    async def labelled_kinds(self, tenant_id: str) -> list[ModelKind]:
        """The sound kinds whose explicit labels (on tracks with an input) number two or
        more different ones: what the demo can train."""
        seen: dict[ModelKind, set[str]] = {kind: set() for kind in SOUND_KINDS}
        query = tenant_scope(tenant_id, codes={"$exists": True})
        async for doc in self.inputs.find(query, {"_id": 0, "tenant_id": 1, "labels": 1}):
            if doc["tenant_id"] == tenant_id:
                for kind in SOUND_KINDS:
                    if label := (doc.get("labels") or {}).get(kind.value):
                        seen[kind].add(label)
        return [kind for kind in SOUND_KINDS if len(seen[kind]) >= 2]

    # Predictions and embeddings of the active models.

    async def stale(
        self, tenant_id: str, kind: ModelKind, version: int, track_ids: list[str] | None = None
    ) -> list[str]:
        """Analysed tracks (of `track_ids`, or all) with an input whose `kind` prediction is
        not from `version`."""
        field = f"predictions.{kind.value}.version"
        query = tenant_scope(tenant_id, **{field: {"$ne": version}})
        if track_ids is not None:
            query["track_id"] = {"$in": track_ids}
        analysed = [
            doc["track_id"]
            async for doc in self.analyses.find(query, {"_id": 0, "track_id": 1, "tenant_id": 1})
            if doc["tenant_id"] == tenant_id
        ]
        if not analysed:
            return []
        with_input = self.inputs.find(
            {**keyed(tenant_id, analysed), **tenant_scope(tenant_id), "codes": {"$exists": True}},
            {"_id": 0, "track_id": 1},
        )
        return sorted([doc["track_id"] async for doc in with_input])

    async def save_predictions(
        self,
        tenant_id: str,
        kind: ModelKind,
        version: int,
        described: dict[str, SoundDescription],
    ) -> None:
        """Store each track's prediction under `version`; a genre model's also stores the
        embedding (analyses, for similarity; tracks, for the recommender)."""
        for track_id, d in described.items():
            ranked = sorted(d.probabilities.items(), key=lambda kv: (-kv[1], kv[0]))
            update: Document = {
                f"predictions.{kind.value}": {
                    "version": version,
                    "label": d.label,
                    "probabilities": [{"label": k, "p": p} for k, p in ranked],
                }
            }
            if kind == EMBEDDING_KIND:
                update["sound"] = {"version": version, "embedding": d.embedding}
            key = document_key(tenant_id, track_id)
            await self.analyses.update_one({"_id": key, "tenant_id": tenant_id}, {"$set": update})
            if kind == EMBEDDING_KIND:
                await self.tracks.update_one(
                    {"_id": key, "tenant_id": tenant_id},
                    {"$set": {"audio.embedding": d.embedding, "audio.embedding_version": version}},
                )

    async def predictions(self, tenant_id: str, track_id: str) -> dict[ModelKind, StoredPrediction]:
        doc = await self.analyses.find_one(
            {"_id": document_key(tenant_id, track_id)}, {"tenant_id": 1, "predictions": 1}
        )
        if doc is None or doc.get("tenant_id") != tenant_id:
            return {}
        found = {}
        for kind in SOUND_KINDS:
            p = (doc.get("predictions") or {}).get(kind.value)
            if p:
                pairs = [(x["label"], float(x["p"])) for x in p["probabilities"]]
                found[kind] = StoredPrediction(kind, int(p["version"]), p["label"], pairs)
        return found

    async def similar(
        self, tenant_id: str, track_id: str, version: int, first: int
    ) -> list[tuple[str, float]] | None:
        """The `first` tracks whose sound embedding (from `version`) is nearest by cosine
        similarity; None when this track has none from that version."""
        query = tenant_scope(tenant_id, **{"sound.version": {"$eq": version}})
        ids: list[str] = []
        rows: list[list[float]] = []
        # The whole subdocument: a dotted projection comes back flat on nx-27017 (o).
        projection = {"_id": 0, "track_id": 1, "tenant_id": 1, "sound": 1}
        async for doc in self.analyses.find(query, projection):
            if doc["tenant_id"] == tenant_id:
                ids.append(doc["track_id"])
                rows.append(doc["sound"]["embedding"])
        if track_id not in ids:
            return None
        matrix = np.asarray(rows, dtype=np.float64)
        matrix /= np.linalg.norm(matrix, axis=1, keepdims=True).clip(min=1e-12)
        scores = matrix @ matrix[ids.index(track_id)]
        order = [i for i in np.argsort(-scores, kind="stable") if ids[i] != track_id]
        return [(ids[i], float(scores[i])) for i in order[:first]]


async def read_sound_training_data(
    storage: Storage, tenant_id: str, kind: ModelKind
) -> SoundTrainingData:
    """A Trainer's `read` (services/trainers.py) for genre and mood."""
    return await AudioStore(storage.db).training_data(tenant_id, kind)


def _analysis(doc: Document) -> AudioAnalysis:
    from tunelytics.domain.audio.analysis import AudioAnalysis, FeatureSummary
    from tunelytics.domain.audio.quality import QualityReport

    fields = {f.name for f in dataclasses.fields(AudioAnalysis)}
    values = {k: v for k, v in doc.items() if k in fields}
    values["features"] = FeatureSummary(**doc["features"])
    values["quality"] = QualityReport(**doc["quality"])
    values["identified"] = _match(doc.get("identified"))
    values["duplicates"] = [_match(m) for m in doc.get("duplicates", [])]
    return AudioAnalysis(**values)


def _match(doc: Document | None) -> Match | None:
    from tunelytics.domain.audio.fingerprint import Match

    return None if doc is None else Match(**doc)
