"""One upload's analysis: decode, features, quality, fingerprint, then catalogue matching.

The CPU-bound part (:func:`measure`) is pure and runs off the event loop; :func:`analyze`
adds what needs the tenant's catalogue (identification and duplicates) through a
repository protocol, and stores the results.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import torch

from tunelytics.domain.audio.decode import AudioLimits, DecodedAudio, decode
from tunelytics.domain.audio.features import PITCH_CLASSES, AudioFeatures, FeatureSet
from tunelytics.domain.audio.fingerprint import Match, MatchRule, fingerprint, matches
from tunelytics.domain.audio.quality import QualityReport, assess

_FRONTEND: AudioFeatures | None = None


def frontend() -> AudioFeatures:
    """The frontend's fixed matrices are built once per process."""
    global _FRONTEND
    if _FRONTEND is None:
        _FRONTEND = AudioFeatures()
    return _FRONTEND


@dataclass(frozen=True)
class FeatureSummary:
    centroid_hz: float
    bandwidth_hz: float
    rolloff_hz: float
    flatness: float
    zero_crossing_rate: float
    rms: float
    onset_strength: float
    mfcc_mean: list[float]
    chroma_mean: list[float]
    contrast_mean: list[float]


@dataclass
class AudioAnalysis:
    track_id: str
    duration_s: float
    sample_rate: int
    channels: int
    format: str
    tempo_bpm: float
    tempo_confidence: float
    key: str
    mode: str
    key_confidence: float
    loudness_lufs: float | None
    true_peak_dbtp: float
    features: FeatureSummary
    quality: QualityReport
    embedding: list[float]
    hashes: int
    identified: Match | None = None
    duplicates: list[Match] = field(default_factory=list)
    analyzed_at: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass(frozen=True)
class Measured:
    decoded: DecodedAudio
    features: FeatureSet
    quality: QualityReport
    hashes: list[tuple[int, int]]


def _mean(x: torch.Tensor) -> float:
    return float(x.double().mean())


def embedding_of(f: FeatureSet) -> list[float]:
    """A fixed-length sound description for similarity: mean and spread of the MFCCs,
    mean chroma and contrast, and the scale-free spectral shape, L2-normalised."""
    parts = [
        f.mfcc[0].mean(-1) / 100,
        f.mfcc[0].std(-1) / 50,
        f.chroma[0].mean(-1),
        f.contrast[0].mean(-1) / 50,
        torch.stack([f.centroid[0].mean(), f.bandwidth[0].mean(), f.rolloff[0].mean()]) / 11025,
        torch.stack([f.flatness[0].mean(), f.zcr[0].mean(), f.onset[0].mean() / 10]),
    ]
    vector = torch.cat([p.double() for p in parts])
    return (vector / vector.norm().clamp(min=1e-12)).tolist()


def measure(data: bytes, limits: AudioLimits | None = None) -> Measured:
    decoded = decode(data, limits)
    with torch.inference_mode():
        features = frontend()(torch.from_numpy(decoded.mono).unsqueeze(0))
    quality = assess(decoded.native, decoded.native_rate)
    return Measured(decoded, features, quality, fingerprint(decoded.mono))


def summarize(track_id: str, m: Measured) -> AudioAnalysis:
    f, q = m.features, m.quality
    return AudioAnalysis(
        track_id=track_id,
        duration_s=m.decoded.seconds,
        sample_rate=m.decoded.native_rate,
        channels=int(m.decoded.native.shape[0]),
        format=m.decoded.format,
        tempo_bpm=float(f.tempo[0]),
        tempo_confidence=float(f.tempo_confidence[0]),
        key=PITCH_CLASSES[int(f.key[0])],
        mode="minor" if bool(f.minor[0]) else "major",
        key_confidence=float(f.key_confidence[0]),
        loudness_lufs=q.loudness_lufs if math.isfinite(q.loudness_lufs) else None,
        true_peak_dbtp=q.true_peak_dbtp,
        features=FeatureSummary(
            centroid_hz=_mean(f.centroid),
            bandwidth_hz=_mean(f.bandwidth),
            rolloff_hz=_mean(f.rolloff),
            flatness=_mean(f.flatness),
            zero_crossing_rate=_mean(f.zcr),
            rms=_mean(f.rms),
            onset_strength=_mean(f.onset),
            mfcc_mean=f.mfcc[0].double().mean(-1).tolist(),
            chroma_mean=f.chroma[0].double().mean(-1).tolist(),
            contrast_mean=f.contrast[0].double().mean(-1).tolist(),
        ),
        quality=q,
        embedding=embedding_of(f),
        hashes=len(m.hashes),
    )


class AudioRepository(Protocol):
    async def lookup(self, tenant_id: str, hashes: set[int]) -> list[tuple[int, str, int]]: ...

    async def replace_fingerprints(
        self, tenant_id: str, track_id: str, hashes: list[tuple[int, int]]
    ) -> None: ...

    async def save(self, tenant_id: str, analysis: AudioAnalysis) -> None: ...


async def analyze(
    repository: AudioRepository,
    tenant_id: str,
    track_id: str,
    data: bytes,
    limits: AudioLimits | None = None,
    rule: MatchRule | None = None,
) -> AudioAnalysis:
    """Raises AudioRejected for unusable bytes; stores fingerprints and the analysis."""
    rule = rule or MatchRule()
    measured = await asyncio.to_thread(measure, data, limits)
    analysis = summarize(track_id, measured)
    found = await repository.lookup(tenant_id, {h for h, _ in measured.hashes})
    others = [row for row in found if row[1] != track_id]
    ranked = [m for m in matches(measured.hashes, others) if rule.identified(m)]
    analysis.identified = ranked[0] if ranked else None
    analysis.duplicates = [m for m in ranked if m.coverage >= rule.duplicate_coverage]
    await repository.replace_fingerprints(tenant_id, track_id, measured.hashes)
    await repository.save(tenant_id, analysis)
    return analysis
