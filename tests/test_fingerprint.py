"""Landmark fingerprints: identification under degradations, false matches, and the
per-tenant store on the real MongoDB-wire server."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
import soxr
from scipy import signal

from tunelytics.domain.audio.fingerprint import (
    MemoryIndex,
    best_of,
    fingerprint,
    identify,
    speed_variants,
)
from tunelytics.domain.audio.synth import Style, synthesize
from tunelytics.storage import Storage
from tunelytics.storage.audio import AudioStore

SR = 22050
STYLES = [
    Style(tempo=96, tonic=0, brightness=0.8, drums=0.8),
    Style(tempo=128, tonic=7, minor=True, brightness=0.3, drums=0.2, attack=0.2),
    Style(tempo=140, tonic=3, brightness=0.6, drums=1.0, swing=0.2, noise=0.4),
]


@pytest.fixture(scope="module")
def catalogue() -> tuple[list[np.ndarray], MemoryIndex]:
    tracks = [synthesize(s, 15.0, SR, seed=i) for i, s in enumerate(STYLES)]
    index = MemoryIndex()
    for i, track in enumerate(tracks):
        index.add(f"track-{i}", fingerprint(track))
    return tracks, index


def _degrade(x: np.ndarray, kind: str) -> np.ndarray:
    rng = np.random.default_rng(1)
    if kind == "gain+6":
        return np.clip(2 * x, -1, 1)
    if kind == "gain-6":
        return 0.5 * x
    if kind == "noise":
        return x + rng.standard_normal(x.size) * np.sqrt(np.mean(x**2) / 10)
    if kind == "lowpass":
        return signal.sosfilt(signal.butter(8, 8000, fs=SR, output="sos"), x)
    return x


@pytest.mark.parametrize("kind", ["clean", "gain+6", "gain-6", "noise", "lowpass"])
def test_excerpts_are_identified_at_their_offset(
    catalogue: tuple[list[np.ndarray], MemoryIndex], kind: str
) -> None:
    tracks, index = catalogue
    for i, track in enumerate(tracks):
        start = 3.0 + 2 * i
        excerpt = _degrade(track[int(start * SR) : int((start + 5) * SR)], kind)
        query = fingerprint(excerpt)
        best = identify(query, index.lookup({h for h, _ in query}))
        assert best is not None and best.track_id == f"track-{i}", (kind, i, best)
        assert abs(best.offset_seconds - start) < 0.05


def test_unknown_music_matches_nothing(catalogue: tuple[list[np.ndarray], MemoryIndex]) -> None:
    _, index = catalogue
    # Other songs: the catalogue's timbres, other tempi and keys. (Same tempo, key and
    # drum pattern would be the same arrangement, sample for sample in the drums.)
    for seed, style in enumerate(STYLES):
        other = Style(**{**style.__dict__, "tempo": style.tempo + 11, "tonic": style.tonic + 2})
        stranger = synthesize(other, 5.0, SR, seed=100 + seed)
        query = fingerprint(stranger)
        assert query, "the stranger has landmarks"
        assert identify(query, index.lookup({h for h, _ in query})) is None


def test_speed_change_needs_the_speed_search(
    catalogue: tuple[list[np.ndarray], MemoryIndex],
) -> None:
    tracks, index = catalogue
    excerpt = tracks[0][4 * SR : 9 * SR]
    faster = soxr.resample(excerpt, SR * 1.02, SR)
    plain = fingerprint(faster)
    assert identify(plain, index.lookup({h for h, _ in plain})) is None
    found = best_of(identify(q, index.lookup({h for h, _ in q})) for _, q in speed_variants(faster))
    assert found is not None and found.track_id == "track-0"


async def test_store_is_per_tenant(storage: Storage) -> None:
    store = AudioStore(storage.db)
    a, b = f"fa-{uuid.uuid4().hex[:8]}", f"fb-{uuid.uuid4().hex[:8]}"
    await store.replace_fingerprints(a, "tr-1", [(11, 0), (12, 3), (13, 5)])
    await store.replace_fingerprints(b, "tr-1", [(11, 7), (99, 1)])
    assert sorted(await store.lookup(a, {11, 12, 99})) == [(11, "tr-1", 0), (12, "tr-1", 3)]
    assert sorted(await store.lookup(b, {11, 12, 99})) == [(11, "tr-1", 7), (99, "tr-1", 1)]
    # Re-analysing a track replaces its hashes, in its tenant only.
    await store.replace_fingerprints(a, "tr-1", [(14, 2)])
    assert await store.lookup(a, {11, 12, 13, 14}) == [(14, "tr-1", 2)]
    assert sorted(await store.lookup(b, {11, 99})) == [(11, "tr-1", 7), (99, "tr-1", 1)]
    # Lookups larger than one $in chunk.
    many = [(h, h % 50) for h in range(2500)]
    await store.replace_fingerprints(a, "tr-2", many)
    rows = await store.lookup(a, set(range(0, 2500, 2)))
    assert len([r for r in rows if r[1] == "tr-2"]) == 1250 and (14, "tr-1", 2) in rows
    indexes = await storage.db["fingerprints"].index_information()
    keyed = [spec["key"] for name, spec in indexes.items() if name != "_id_"]
    assert [("tenant_id", 1), ("hash", 1)] in keyed
    assert all(key[0][0] == "tenant_id" for key in keyed)
