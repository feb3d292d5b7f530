"""The demo tenant's audio: a few generated clips analysed at seed time (and one re-upload
of the first, quieter and as FLAC, so a duplicate shows), through the product's analysis."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tunelytics.domain.audio.analysis import analyze
from tunelytics.domain.audio.decode import encode_wav
from tunelytics.domain.audio.synth import Style, synthesize
from tunelytics.storage import Storage
from tunelytics.storage.audio import AudioStore

RATE = 22050
SECONDS = 10.0
STYLES = (
    Style(tempo=124.0, tonic=9, minor=True, brightness=0.9, drums=0.9),
    Style(tempo=84.0, tonic=0, brightness=0.3, drums=0.2, attack=0.2, noise=0.2),
    Style(tempo=150.0, tonic=4, brightness=0.7, drums=1.0, swing=0.2),
    Style(tempo=100.0, tonic=7, minor=True, brightness=0.5, drums=0.5, swing=0.3),
)


def demo_clip_count() -> int:
    return len(STYLES) + 1


async def seed_audio(
    storage: Storage, tenant_id: str, progress: Callable[[int], None] | None = None
) -> int:
    """Analyse the clips for the tenant's first tracks; returns how many were analysed."""
    store = AudioStore(storage.db)
    await storage.ensure_indexes()
    cursor = storage.db["tracks"].find({"tenant_id": tenant_id}, {"id": 1}).sort("id", 1)
    track_ids = [doc["id"] async for doc in cursor.limit(demo_clip_count())]
    clips = [
        encode_wav(0.6 * synthesize(style, SECONDS, RATE, seed=i).astype(np.float32), RATE)
        for i, style in enumerate(STYLES)
    ]
    first = 0.3 * synthesize(STYLES[0], SECONDS, RATE, seed=0).astype(np.float32)
    clips.append(encode_wav(first, RATE, format="FLAC"))
    done = 0
    for track_id, data in zip(track_ids, clips, strict=False):
        await analyze(store, tenant_id, track_id, data)
        done += 1
        if progress:
            progress(1)
    return done
