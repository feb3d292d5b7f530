"""The demo tenant's audio: generated clips of four genres, each labelled with its genre and
a mood (energetic from 110 BPM, calm below), analysed at seed time through the product's
upload path (analysis and classifier input), and one re-upload of the first clip, quieter
and as FLAC, so a duplicate shows. At `serve`, the demo trains GENRE and MOOD on these
labels (services/demo.py), so GraphiQL shows classifications and sound-similar tracks."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tunelytics.domain.audio.synth import Style
from tunelytics.storage import Storage
from tunelytics.storage.audio import AudioStore

RATE = 22050
SECONDS = 8.0
CLIPS_PER_GENRE = 4
# Per genre: tempo range, brightness, drum level, attack, mode (None: either), swing, noise.
GENRES: dict[str, tuple[tuple[float, float], float, float, float, bool | None, float, float]] = {
    "ambient": ((62.0, 80.0), 0.2, 0.05, 0.3, None, 0.0, 0.2),
    "rock": ((112.0, 140.0), 0.85, 0.9, 0.005, False, 0.0, 0.0),
    "jazz": ((92.0, 128.0), 0.5, 0.3, 0.02, None, 0.3, 0.0),
    "electronic": ((124.0, 150.0), 0.95, 1.0, 0.005, True, 0.0, 0.3),
}


def demo_clips() -> list[tuple[Style, str, str]]:
    """(style, genre, mood) of each generated clip, genres interleaved."""
    rng = np.random.default_rng(5)
    clips = []
    for i in range(CLIPS_PER_GENRE):
        for genre, (tempo, bright, drums, attack, minor, swing, noise) in GENRES.items():
            bpm = float(np.round(tempo[0] + (tempo[1] - tempo[0]) * i / (CLIPS_PER_GENRE - 1)))
            style = Style(
                tempo=bpm,
                tonic=int(rng.integers(0, 12)),
                minor=bool(rng.integers(0, 2)) if minor is None else minor,
                brightness=float(np.clip(bright + rng.normal(0, 0.05), 0, 1)),
                drums=drums,
                swing=swing,
                noise=noise,
                attack=attack,
            )
            clips.append((style, genre, "energetic" if bpm >= 110 else "calm"))
    return clips


def demo_clip_count() -> int:
    return len(GENRES) * CLIPS_PER_GENRE + 1


async def seed_audio(
    storage: Storage, tenant_id: str, progress: Callable[[int], None] | None = None
) -> int:
    """Analyse and label the clips for the tenant's first tracks; returns how many."""
    from tunelytics.domain.audio.classify import analyze_for_classification  # imports torch
    from tunelytics.domain.audio.decode import encode_wav
    from tunelytics.domain.audio.synth import synthesize

    store = AudioStore(storage.db)
    await storage.ensure_indexes()
    cursor = storage.db["tracks"].find({"tenant_id": tenant_id}, {"id": 1}).sort("id", 1)
    track_ids = [doc["id"] async for doc in cursor.limit(demo_clip_count())]
    clips = demo_clips()
    uploads: list[tuple[bytes, str, str]] = [
        (encode_wav(0.6 * synthesize(s, SECONDS, RATE, seed=i).astype(np.float32), RATE), g, m)
        for i, (s, g, m) in enumerate(clips)
    ]
    first = 0.3 * synthesize(clips[0][0], SECONDS, RATE, seed=0).astype(np.float32)
    # The same recording: its labels too (else its catalogue genre would be its label).
    uploads.append((encode_wav(first, RATE, format="FLAC"), clips[0][1], clips[0][2]))
    done = 0
    for track_id, (data, genre, mood) in zip(track_ids, uploads, strict=False):
        await analyze_for_classification(store, tenant_id, track_id, data)
        await store.set_labels(tenant_id, track_id, {"genre": genre, "mood": mood})
        done += 1
        if progress:
            progress(1)
    return done
