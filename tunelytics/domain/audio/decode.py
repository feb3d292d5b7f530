"""Decoding uploads: soundfile (WAV, FLAC, OGG, MP3, ...), limits, mono analysis signal.

Every way a file can be unusable (empty, too large, too long, not audio, corrupt,
silent, non-finite samples) raises :class:`AudioRejected` with a reason the caller can
show; nothing else escapes for bad bytes.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import soundfile
import soxr

ANALYSIS_RATE = 22050
# Peak below this (about -100 dBFS) is digital silence, nothing to analyse.
SILENCE_PEAK = 1e-5


class AudioRejected(ValueError):
    """The bytes cannot be analysed; `reason` says why, for the uploader."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class AudioLimits:
    max_bytes: int = 64 * 1024 * 1024
    max_seconds: float = 20 * 60.0
    min_seconds: float = 1.0


@dataclass(frozen=True)
class DecodedAudio:
    native: np.ndarray  # (channels, samples) float32 at native_rate
    native_rate: int
    mono: np.ndarray  # (samples,) float32 at analysis_rate
    analysis_rate: int
    format: str

    @property
    def seconds(self) -> float:
        return self.native.shape[1] / self.native_rate


def decode(
    data: bytes, limits: AudioLimits | None = None, analysis_rate: int = ANALYSIS_RATE
) -> DecodedAudio:
    limits = limits or AudioLimits()
    if not data:
        raise AudioRejected("the file is empty")
    if len(data) > limits.max_bytes:
        raise AudioRejected(f"the file is larger than {limits.max_bytes} bytes")
    try:
        with soundfile.SoundFile(io.BytesIO(data)) as file:
            rate, frames, kind = file.samplerate, file.frames, file.format
            if rate <= 0:
                raise AudioRejected("the file has no valid sample rate")
            if frames > limits.max_seconds * rate:
                raise AudioRejected(f"the audio is longer than {limits.max_seconds:.0f} s")
            samples = file.read(dtype="float32", always_2d=True)
    except AudioRejected:
        raise
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError, EOFError) as error:
        raise AudioRejected(f"not a decodable audio file ({error})") from None
    native = np.ascontiguousarray(samples.T)
    if native.shape[1] < limits.min_seconds * rate:
        raise AudioRejected(f"the audio is shorter than {limits.min_seconds:g} s")
    if native.shape[1] > limits.max_seconds * rate:
        raise AudioRejected(f"the audio is longer than {limits.max_seconds:.0f} s")
    if not np.isfinite(native).all():
        raise AudioRejected("the audio has non-finite samples")
    if float(np.abs(native).max()) < SILENCE_PEAK:
        raise AudioRejected("the audio is silent")
    mono = native.mean(axis=0)
    if rate != analysis_rate:
        mono = soxr.resample(mono, rate, analysis_rate, quality="HQ")
    return DecodedAudio(
        native, int(rate), np.ascontiguousarray(mono, dtype=np.float32), analysis_rate, kind
    )


def encode_wav(wave: np.ndarray, rate: int, subtype: str = "PCM_16", format: str = "WAV") -> bytes:
    """(samples,) or (channels, samples) -> file bytes; for tests, the CLI and the demo."""
    buffer = io.BytesIO()
    data = wave.T if wave.ndim == 2 else wave
    soundfile.write(buffer, data, rate, subtype=subtype, format=format)
    return buffer.getvalue()
