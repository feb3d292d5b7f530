"""Audio analysis types and the analyzeAudio / audioAnalysis / labelTrackAudio /
similarTracksBySound fields."""

from __future__ import annotations

from typing import TYPE_CHECKING

import strawberry
from strawberry import Info
from strawberry.file_uploads import Upload

from tunelytics.domain.models import ModelKind
from tunelytics.resolvers import audio as resolvers
from tunelytics.resolvers.context import Context
from tunelytics.schema.types import Track
from tunelytics.storage.audio import StoredPrediction

if TYPE_CHECKING:  # the analysis imports torch; the schema is built at every start
    from tunelytics.domain.audio import analysis as domain
    from tunelytics.domain.audio.fingerprint import Match
    from tunelytics.domain.audio.quality import QualityReport

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
class LabelProbability:
    label: str
    probability: float


@strawberry.type(description="A track's label from an active genre or mood model.")
class AudioClassification:
    label: str = strawberry.field(description="The most probable label.")
    probability: float = strawberry.field(
        description="Its calibrated probability (temperature-scaled on held-out tracks)."
    )
    probabilities: list[LabelProbability] = strawberry.field(
        description="Every label the model knows, most probable first; they sum to 1."
    )
    model_version: int = strawberry.field(description="The version that classified it.")

    @classmethod
    def of(cls, p: StoredPrediction) -> AudioClassification:
        return cls(
            label=p.label,
            probability=p.probabilities[0][1],
            probabilities=[LabelProbability(label=k, probability=v) for k, v in p.probabilities],
            model_version=p.version,
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
    genre: AudioClassification | None = strawberry.field(
        description="From the active GENRE model; null (see genreUnavailableReason) without one."
    )
    genre_unavailable_reason: str | None
    mood: AudioClassification | None = strawberry.field(
        description="From the active MOOD model; null (see moodUnavailableReason) without one."
    )
    mood_unavailable_reason: str | None

    @classmethod
    def of(cls, classified: resolvers.ClassifiedAnalysis) -> AudioAnalysis:
        a, predictions = classified.analysis, classified.predictions
        genre, mood = predictions.get(ModelKind.GENRE), predictions.get(ModelKind.MOOD)
        return cls(
            genre=AudioClassification.of(genre) if genre else None,
            genre_unavailable_reason=classified.unavailable.get(ModelKind.GENRE),
            mood=AudioClassification.of(mood) if mood else None,
            mood_unavailable_reason=classified.unavailable.get(ModelKind.MOOD),
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


@strawberry.type(description="The labels a track's genre and mood models train on.")
class AudioLabels:
    genre: str | None = strawberry.field(
        description="Unset, the track's first catalogue genre is its genre label."
    )
    mood: str | None


@strawberry.type(description="A track that sounds like another, by the genre model.")
class SoundMatch:
    track: Track
    similarity: float = strawberry.field(
        description="Cosine similarity of the learned sound embeddings, -1 to 1."
    )


@strawberry.type
class AudioQuery:
    @strawberry.field(
        description="The stored analysis of a track's audio, with genre and mood from the "
        "active models."
    )
    async def audio_analysis(self, info: CtxInfo, track_id: strawberry.ID) -> AudioAnalysis:
        return AudioAnalysis.of(await resolvers.audio_analysis(info, track_id))

    @strawberry.field(
        description="Tracks of your catalogue that sound most like this one: cosine "
        "similarity of the active GENRE model's learned embedding (MODEL_NOT_READY without "
        "one). Only tracks whose audio was analysed take part."
    )
    async def similar_tracks_by_sound(
        self, info: CtxInfo, track_id: strawberry.ID, first: int = 10
    ) -> list[SoundMatch]:
        found = await resolvers.similar_tracks_by_sound(info, track_id, first)
        return [SoundMatch(track=Track.of(t), similarity=s) for t, s in found]


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

    @strawberry.mutation(
        description="Label a track for training genre and mood models (trainModel(kind: "
        "GENRE / MOOD)): a value sets the label, an empty string clears it, null keeps it."
    )
    async def label_track_audio(
        self,
        info: CtxInfo,
        track_id: strawberry.ID,
        genre: str | None = None,
        mood: str | None = None,
    ) -> AudioLabels:
        labels = await resolvers.label_track_audio(info, track_id, genre, mood)
        return AudioLabels(genre=labels.get("genre"), mood=labels.get("mood"))
