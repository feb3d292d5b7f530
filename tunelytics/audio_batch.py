"""Bulk analysis of audio files for `tunelytics analyze`: the same path as analyzeAudio."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from tunelytics.config import Settings
from tunelytics.domain.audio.analysis import AudioAnalysis
from tunelytics.domain.audio.classify import analyze_for_classification
from tunelytics.domain.audio.decode import AudioLimits, AudioRejected
from tunelytics.storage import connect
from tunelytics.storage.audio import AudioStore


@dataclass(frozen=True)
class FileOutcome:
    path: Path
    track_id: str
    analysis: AudioAnalysis | None = None
    error: str | None = None

    def line(self) -> str:
        if self.analysis is None:
            return f"{self.path}: {self.track_id}: rejected: {self.error}"
        a = self.analysis
        loud = f"{a.loudness_lufs:.1f} LUFS" if a.loudness_lufs is not None else "silent"
        dup = f", duplicate of {a.duplicates[0].track_id}" if a.duplicates else ""
        return (
            f"{self.path}: {self.track_id}: {a.tempo_bpm:.0f} BPM, {a.key} {a.mode}, {loud}, "
            f"{a.true_peak_dbtp:.1f} dBTP, quality {a.quality.verdict}{dup}"
        )


def track_ids(paths: list[Path], given: list[str]) -> list[str]:
    """One ID per path, or each file's name without its extension."""
    if given and len(given) != len(paths):
        raise ValueError(f"{len(given)} --track-id for {len(paths)} paths: give one per path")
    return list(given) if given else [p.stem for p in paths]


async def analyze_files(
    settings: Settings, tenant: str, paths: list[Path], ids: list[str], quiet: bool = False
) -> list[FileOutcome]:
    assert settings.mongodb_url
    storage = connect(settings.mongodb_url, settings.mongodb_database)
    limits = AudioLimits(
        max_bytes=settings.limits.max_upload_bytes,
        max_seconds=settings.limits.max_audio_seconds,
    )
    store = AudioStore(storage.db)
    outcomes: list[FileOutcome] = []
    try:
        await storage.ensure_indexes()
        known = await storage.tracks.by_ids(tenant, ids)
        for path, track_id in tqdm(
            list(zip(paths, ids, strict=True)), desc="analysing", unit="file", disable=quiet
        ):
            if track_id not in known:
                outcomes.append(FileOutcome(path, track_id, error=f"no track {track_id}"))
                continue
            try:
                data = path.read_bytes()
                result = await analyze_for_classification(store, tenant, track_id, data, limits)
                outcomes.append(FileOutcome(path, track_id, result))
            except AudioRejected as error:
                outcomes.append(FileOutcome(path, track_id, error=error.reason))
    finally:
        await storage.close()
    return outcomes
