"""Decoding limits and bad bytes, and the quality assessment on signals with known faults."""

from __future__ import annotations

import numpy as np
import pytest
import soxr
from scipy import signal

from tunelytics.domain.audio.decode import AudioLimits, AudioRejected, decode, encode_wav
from tunelytics.domain.audio.quality import OK, REJECT, WARNING, assess
from tunelytics.domain.audio.synth import Style, synthesize

RATE = 44100


def _master(seconds: float = 6.0, lufs_gain: float = 1.0) -> np.ndarray:
    """Broadband generated music at 44.1 kHz with noise up to Nyquist, peak -3 dBFS."""
    rng = np.random.default_rng(0)
    track = synthesize(Style(brightness=1.0, noise=0.2), seconds, RATE, seed=3)
    hiss = signal.lfilter([1, -0.5], [1], rng.standard_normal(track.size)) * 0.01
    wave = track + hiss
    # A master is limited: soft saturation keeps the crest factor of delivered music.
    wave = np.tanh(3.0 * wave / np.abs(wave).max())
    return (lufs_gain * 0.7 * wave / np.abs(wave).max()).astype(np.float32)


@pytest.mark.parametrize(
    ("fmt", "subtype"),
    [("WAV", "PCM_16"), ("FLAC", "PCM_24"), ("OGG", "VORBIS"), ("MP3", "MPEG_LAYER_III")],
)
def test_decodes_common_formats_to_the_analysis_rate(fmt: str, subtype: str) -> None:
    stereo = np.stack([_master(3.0), 0.5 * _master(3.0)])
    audio = decode(encode_wav(stereo, RATE, subtype=subtype, format=fmt))
    assert audio.native_rate == RATE and audio.native.shape[0] == 2
    assert abs(audio.seconds - 3.0) < 0.1
    assert audio.analysis_rate == 22050
    assert abs(audio.mono.size / 22050 - audio.seconds) < 0.01
    # The mix-down is the channel mean, resampled.
    if fmt in ("WAV", "FLAC"):
        expected = soxr.resample(stereo.mean(0), RATE, 22050, quality="HQ")
        assert np.abs(audio.mono - expected).max() < 1e-3


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"this is not audio at all" * 100, "not a decodable audio file"),
        (encode_wav(np.zeros(RATE * 2, dtype=np.float32), RATE), "silent"),
        (encode_wav(_master(3.0), RATE)[:12] + b"\xff" * 200, "not a decodable"),
        (encode_wav(_master(3.0)[:1000], RATE), "shorter"),
    ],
)
def test_bad_bytes_are_rejected_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(AudioRejected) as caught:
        decode(data)
    assert reason in caught.value.reason


def test_size_and_duration_limits() -> None:
    data = encode_wav(_master(3.0), RATE)
    with pytest.raises(AudioRejected, match="larger than"):
        decode(data, AudioLimits(max_bytes=len(data) - 1))
    with pytest.raises(AudioRejected, match="longer than"):
        decode(data, AudioLimits(max_seconds=2.0))
    assert decode(data, AudioLimits(max_bytes=len(data), max_seconds=3.0)).seconds == 3.0


def test_a_clean_master_at_target_is_ok() -> None:
    wave = _master()
    report = assess(wave[None], RATE)
    # Bring it to -16 LUFS (within the target's range for a dynamic master).
    gain = 10 ** ((-16.0 - report.loudness_lufs) / 20)
    report = assess((wave * gain)[None], RATE)
    assert abs(report.loudness_lufs + 16.0) < 0.05
    assert report.true_peak_dbtp < -1.0, report
    assert report.verdict == OK, report.reasons
    assert report.effective_bandwidth_hz > 18_000


def test_clipping_and_loudness_are_reported() -> None:
    hot = np.clip(_master() * 4, -1.0, 1.0)
    report = assess(hot[None], RATE)
    assert report.clipping_ratio > 0.01
    assert report.verdict == REJECT
    assert any("clipped" in r for r in report.reasons)
    assert any("above the -14 LUFS target" in r for r in report.reasons)
    assert report.true_peak_dbtp > -0.1


def test_silent_edges() -> None:
    wave = _master(4.0) * 0.5
    padded = np.concatenate([np.zeros(3 * RATE), wave, np.zeros(RATE)]).astype(np.float32)
    report = assess(padded[None], RATE)
    assert abs(report.leading_silence_s - 3.0) < 0.06
    assert abs(report.trailing_silence_s - 1.0) < 0.06
    assert abs(report.silence_ratio - 4 / 8) < 0.02
    assert report.verdict == WARNING
    assert any("3.0 s of leading silence" in r for r in report.reasons)
    assert not any("trailing" in r for r in report.reasons)


def test_dc_offset() -> None:
    report = assess((_master(4.0) * 0.5 + 0.02)[None], RATE)
    assert abs(report.dc_offset - 0.02) < 1e-3
    assert any("DC offset" in r for r in report.reasons)


def test_mostly_silent_audio_is_rejected() -> None:
    wave = np.zeros(20 * RATE, dtype=np.float32)
    wave[: RATE // 2] = _master(0.5)
    assert assess(wave[None], RATE).verdict == REJECT


def test_upsampled_and_lowpassed_files_are_flagged() -> None:
    wave = _master()
    # A lossy encoder's brick-wall low-pass at 16 kHz.
    transcoded = signal.lfilter(
        signal.firwin(1001, 16_000, window=("kaiser", 12.0), fs=RATE), [1.0], wave
    )
    transcoded = transcoded.astype(np.float32)
    report = assess(transcoded[None], RATE)
    assert 15_000 < report.effective_bandwidth_hz < 17_500
    assert any("likely upsampled or transcoded" in r for r in report.reasons)
    upsampled = soxr.resample(soxr.resample(wave, RATE, 22050), 22050, RATE).astype(np.float32)
    report = assess(upsampled[None], RATE)
    assert report.effective_bandwidth_hz < 11_500
    assert report.verdict == WARNING
