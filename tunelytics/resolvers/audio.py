"""analyzeAudio, audioAnalysis, labelTrackAudio and similarTracksBySound: auth, the
track's tenant check, error mapping, and genre / mood predictions from the active models.

Predictions are stored per track with the model version that made them. When the active
version changes (trainModel with activate, activateModel), a track's stored prediction is
stale: it is recomputed from the track's stored classifier input through the served
model (micro-batched) the next time it is read, and similarity first brings every
analysed track of the tenant up to the active genre version.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from strawberry import Info
from strawberry.file_uploads import Upload

from tunelytics.domain.audio.decode import AudioLimits, AudioRejected
from tunelytics.domain.auth import Permission
from tunelytics.domain.catalog import Track, clean_genres
from tunelytics.domain.errors import InvalidItem
from tunelytics.domain.models import ModelKind
from tunelytics.resolvers.context import Context
from tunelytics.resolvers.errors import BadUserInput, ModelNotReady, NotFound
from tunelytics.resolvers.models import served
from tunelytics.storage.audio import EMBEDDING_KIND, SOUND_KINDS, AudioStore, StoredPrediction

if TYPE_CHECKING:
    from tunelytics.domain.audio.analysis import AudioAnalysis

CtxInfo = Info[Context, None]
MAX_SIMILAR = 100
# Tracks described per round trip to the served model (its micro-batch size).
DESCRIBE_CHUNK = 64


@dataclass
class ClassifiedAnalysis:
    """An analysis with the active models' predictions; for a kind without one, why."""

    analysis: AudioAnalysis
    predictions: dict[ModelKind, StoredPrediction] = field(default_factory=dict)
    unavailable: dict[ModelKind, str] = field(default_factory=dict)


def _limits(info: CtxInfo) -> AudioLimits:
    limits = info.context.settings.limits
    return AudioLimits(
        max_bytes=getattr(limits, "max_upload_bytes", AudioLimits.max_bytes),
        max_seconds=getattr(limits, "max_audio_seconds", AudioLimits.max_seconds),
    )


async def _read(file: Upload, max_bytes: int) -> bytes:
    read = getattr(file, "read", None)
    if read is None:
        raise BadUserInput("file must be an uploaded file (GraphQL multipart request)")
    data = await read(max_bytes + 1)
    if len(data) > max_bytes:
        raise BadUserInput(f"the file is larger than {max_bytes} bytes", reason="TOO_LARGE")
    return bytes(data)


async def refresh_predictions(
    ctx: Context, tenant_id: str, kind: ModelKind, track_ids: list[str] | None = None
) -> int:
    """Bring the tracks' `kind` predictions (all analysed tracks when None) up to the active
    version; returns the version. Raises ModelNotReady (saying why) when none is active."""
    model = await served(ctx, tenant_id, kind)
    version = model.version.version
    store = AudioStore(ctx.storage.db)
    stale = await store.stale(tenant_id, kind, version, track_ids)
    for first in range(0, len(stale), DESCRIBE_CHUNK):
        inputs = await store.inputs_of(tenant_id, stale[first : first + DESCRIBE_CHUNK])
        ids = sorted(inputs)
        described = await asyncio.gather(*(model.call("describe", inputs[t]) for t in ids))
        await store.save_predictions(
            tenant_id, kind, version, dict(zip(ids, described, strict=True))
        )
    return version


async def _classified(ctx: Context, tenant_id: str, analysis: AudioAnalysis) -> ClassifiedAnalysis:
    result = ClassifiedAnalysis(analysis)
    versions: dict[ModelKind, int] = {}
    for kind in SOUND_KINDS:
        try:
            versions[kind] = await refresh_predictions(ctx, tenant_id, kind, [analysis.track_id])
        except ModelNotReady as error:
            result.unavailable[kind] = str(error)
    stored = await AudioStore(ctx.storage.db).predictions(tenant_id, analysis.track_id)
    for kind, version in versions.items():
        prediction = stored.get(kind)
        if prediction is not None and prediction.version == version:
            result.predictions[kind] = prediction
        else:
            result.unavailable[kind] = (
                "this track's analysis has no classifier input (analysed before "
                "classification existed): analyse its audio again"
            )
    return result


async def analyze_audio(info: CtxInfo, track_id: str, file: Upload) -> ClassifiedAnalysis:
    from tunelytics.domain.audio.classify import analyze_for_classification

    ctx = info.context
    principal = ctx.authorize(Permission.WRITE_CATALOG)
    await ctx.loaders.track.require(track_id, "track")
    limits = _limits(info)
    data = await _read(file, limits.max_bytes)
    try:
        analysis = await analyze_for_classification(
            AudioStore(ctx.storage.db), principal.tenant_id, track_id, data, limits
        )
    except AudioRejected as error:
        raise BadUserInput(error.reason, reason="UNUSABLE_AUDIO") from None
    return await _classified(ctx, principal.tenant_id, analysis)


async def audio_analysis(info: CtxInfo, track_id: str) -> ClassifiedAnalysis:
    ctx = info.context
    principal = ctx.authorize(Permission.READ)
    found = await AudioStore(ctx.storage.db).analysis(principal.tenant_id, track_id)
    if found is None:
        raise NotFound(f"track {track_id} has no audio analysis")
    return await _classified(ctx, principal.tenant_id, found)


def _label(value: str | None, argument: str) -> str | None:
    """None leaves a label as it is, "" clears it, anything else is a lower-case tag."""
    if value is None or value == "":
        return value
    try:
        return clean_genres([value])[0]
    except InvalidItem as error:
        raise BadUserInput(f"{argument}: {error.reason}", argument=argument) from None


async def label_track_audio(
    info: CtxInfo, track_id: str, genre: str | None, mood: str | None
) -> dict[str, str]:
    """Set the labels genre and mood models train on; returns the track's labels."""
    ctx = info.context
    principal = ctx.authorize(Permission.WRITE_CATALOG)
    await ctx.loaders.track.require(track_id, "track")
    given = {"genre": _label(genre, "genre"), "mood": _label(mood, "mood")}
    changes = {k: (v or None) for k, v in given.items() if v is not None}
    store = AudioStore(ctx.storage.db)
    if not changes:
        return await store.labels(principal.tenant_id, track_id)
    return await store.set_labels(principal.tenant_id, track_id, changes)


async def similar_tracks_by_sound(
    info: CtxInfo, track_id: str, first: int
) -> list[tuple[Track, float]]:
    """Nearest tracks of the tenant by cosine similarity of the active genre model's
    embedding (MODEL_NOT_READY without one)."""
    ctx = info.context
    principal = ctx.authorize(Permission.READ)
    if not 1 <= first <= MAX_SIMILAR:
        raise BadUserInput(f"first must be between 1 and {MAX_SIMILAR}", argument="first")
    tenant = principal.tenant_id
    await ctx.loaders.track.require(track_id, "track")
    version = await refresh_predictions(ctx, tenant, EMBEDDING_KIND)
    found = await AudioStore(ctx.storage.db).similar(tenant, track_id, version, first)
    if found is None:
        raise NotFound(
            f"track {track_id} has no sound embedding: analyse its audio (analyzeAudio)",
            id=track_id,
        )
    tracks = await ctx.loaders.track.load_many([t for t, _ in found])
    return [(t, score) for t, (_, score) in zip(tracks, found, strict=True) if t is not None]
