"""Audio analysis types and the analyzeAudio / audioAnalysis fields."""

from __future__ import annotations

import strawberry
from strawberry import Info
from strawberry.file_uploads import Upload

from tunelytics.domain.audio import analysis as domain
from tunelytics.domain.audio.fingerprint import Match
from tunelytics.domain.audio.quality import QualityReport
from tunelytics.resolvers import audio as resolvers
from tunelytics.resolvers.context import Context

CtxInfo = Info[Context, None]


@strawberry.type(description="Another track of your catalogue that this audio matches.")
class AudioMatch:
    track_id: strawberry.ID
    votes: int = strawberry.field(description="Landmark hashes agreeing on one time offset.")
    offset_seconds: float = strawberry.field(description="Where the match starts in that track.")
    coverage: float = strawberry.field(description="Share of this audio's hashes that agree.")

    @classmethod
    def of(cls, m: Match) -> AudioMatch:
        return cls(
            track_id=strawberry.ID(m.track_id),
            votes=m.votes,
            offset_seconds=m.offset_seconds,
            coverage=m.coverage,
        )


@strawberry.type
class AudioQuality:
    verdict: str = strawberry.field(description="ok, warning or reject.")
    reasons: list[str]
    clipping_ratio: float
    silence_ratio: float
    leading_silence_seconds: float
    trailing_silence_seconds: float
    dc_offset: float
    loudness_lufs: float | None
    true_peak_dbtp: float
    effective_bandwidth_hz: float

    @classmethod
    def of(cls, q: QualityReport) -> AudioQuality:
        return cls(
            verdict=q.verdict,
            reasons=list(q.reasons),
            clipping_ratio=q.clipping_ratio,
            silence_ratio=q.silence_ratio,
            leading_silence_seconds=q.leading_silence_s,
            trailing_silence_seconds=q.trailing_silence_s,
            dc_offset=q.dc_offset,
            loudness_lufs=q.loudness_lufs if q.loudness_lufs > -1e300 else None,
            true_peak_dbtp=q.true_peak_dbtp,
            effective_bandwidth_hz=q.effective_bandwidth_hz,
        )


@strawberry.type(description="Means over the track of the frame features.")
class AudioFeatureSummary:
    spectral_centroid_hz: float
    spectral_bandwidth_hz: float
    spectral_rolloff_hz: float
    spectral_flatness: float
    zero_crossing_rate: float
    rms: float
    onset_strength: float
    mfcc_mean: list[float]
    chroma_mean: list[float] = strawberry.field(description="Pitch classes C to B.")
    spectral_contrast_mean: list[float]

    @classmethod
    def of(cls, f: domain.FeatureSummary) -> AudioFeatureSummary:
        return cls(
            spectral_centroid_hz=f.centroid_hz,
            spectral_bandwidth_hz=f.bandwidth_hz,
            spectral_rolloff_hz=f.rolloff_hz,
            spectral_flatness=f.flatness,
            zero_crossing_rate=f.zero_crossing_rate,
            rms=f.rms,
            onset_strength=f.onset_strength,
            mfcc_mean=f.mfcc_mean,
            chroma_mean=f.chroma_mean,
            spectral_contrast_mean=f.contrast_mean,
        )


@strawberry.type
class AudioAnalysis:
    track_id: strawberry.ID
    duration_seconds: float
    sample_rate: int
    channels: int
    format: str
    tempo_bpm: float
    tempo_confidence: float
    key: str
    mode: str
    key_confidence: float
    loudness_lufs: float | None = strawberry.field(description="Integrated, BS.1770-4.")
    true_peak_dbtp: float
    features: AudioFeatureSummary
    quality: AudioQuality
    identified: AudioMatch | None = strawberry.field(
        description="The best-aligned other track of your catalogue, when the evidence holds."
    )
    duplicates: list[AudioMatch] = strawberry.field(
        description="Other tracks this audio largely repeats."
    )
    embedding_size: int
    fingerprint_hashes: int

    @classmethod
    def of(cls, a: domain.AudioAnalysis) -> AudioAnalysis:
        return cls(
            track_id=strawberry.ID(a.track_id),
            duration_seconds=a.duration_s,
            sample_rate=a.sample_rate,
            channels=a.channels,
            format=a.format,
            tempo_bpm=a.tempo_bpm,
            tempo_confidence=a.tempo_confidence,
            key=a.key,
            mode=a.mode,
            key_confidence=a.key_confidence,
            loudness_lufs=a.loudness_lufs,
            true_peak_dbtp=a.true_peak_dbtp,
            features=AudioFeatureSummary.of(a.features),
            quality=AudioQuality.of(a.quality),
            identified=AudioMatch.of(a.identified) if a.identified else None,
            duplicates=[AudioMatch.of(m) for m in a.duplicates],
            embedding_size=len(a.embedding),
            fingerprint_hashes=a.hashes,
        )


@strawberry.type
class AudioQuery:
    @strawberry.field(description="The stored analysis of a track's audio.")
    async def audio_analysis(self, info: CtxInfo, track_id: strawberry.ID) -> AudioAnalysis:
        return AudioAnalysis.of(await resolvers.audio_analysis(info, track_id))


@strawberry.type
class AudioMutation:
    @strawberry.mutation(
        description="Analyse a track's audio file (GraphQL multipart request): features, "
        "tempo, key, loudness, quality verdict, and matches in your catalogue."
    )
    async def analyze_audio(
        self, info: CtxInfo, track_id: strawberry.ID, file: Upload
    ) -> AudioAnalysis:
        return AudioAnalysis.of(await resolvers.analyze_audio(info, track_id, file))
