"""Quality assessment of an upload against streaming delivery targets.

Measures clipping, silence (overall, leading, trailing), DC offset, integrated loudness
and true peak (BS.1770-4, on the file's own channels and rate) and the effective
bandwidth (where the long-term spectrum falls to the floor: a 44.1 kHz file whose
content stops at 16 kHz was upsampled or transcoded from a lossy source), then gives one
verdict, ok / warning / reject, with the reasons.

>>> import numpy as np
>>> t = np.arange(44100 * 3) / 44100
>>> rng = np.random.default_rng(0)
>>> wave = 0.2 * np.sin(2 * np.pi * 440 * t) + 0.02 * rng.standard_normal(t.size)
>>> report = assess(wave[None].astype(np.float32), 44100)
>>> report.verdict, round(report.clipping_ratio, 3)
('ok', 0.0)
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np
import torch

from tunelytics.domain.audio.loudness import IntegratedLoudness, TruePeak

OK, WARNING, REJECT = "ok", "warning", "reject"


@dataclass(frozen=True)
class QualityTargets:
    loudness_lufs: float = -14.0
    loudness_tolerance_lu: float = 1.0
    quiet_tolerance_lu: float = 6.0
    true_peak_dbtp: float = -1.0
    clip_level: float = 0.999
    clipping_warn: float = 1e-4
    clipping_reject: float = 1e-2
    silence_dbfs: float = -60.0
    silence_warn: float = 0.5
    silence_reject: float = 0.95
    edge_silence_warn_s: float = 2.0
    dc_warn: float = 0.01
    # Effective bandwidth below this share of Nyquist (and under 18 kHz) is suspicious.
    bandwidth_share: float = 0.85
    floor_db: float = 50.0


@dataclass
class QualityReport:
    clipping_ratio: float
    silence_ratio: float
    leading_silence_s: float
    trailing_silence_s: float
    dc_offset: float
    loudness_lufs: float
    true_peak_dbtp: float
    effective_bandwidth_hz: float
    nyquist_hz: float
    verdict: str = OK
    reasons: list[str] = field(default_factory=list)


def _silence(mono: np.ndarray, rate: int, threshold_db: float) -> tuple[float, float, float]:
    frame = max(int(0.05 * rate), 1)
    count = mono.size // frame
    if count == 0:
        return 1.0, 0.0, 0.0
    rms = np.sqrt(np.mean(mono[: count * frame].reshape(count, frame) ** 2, axis=1))
    silent = 20 * np.log10(np.maximum(rms, 1e-12)) < threshold_db
    if silent.all():
        return 1.0, count * frame / rate, count * frame / rate
    loud = np.flatnonzero(~silent)
    return float(silent.mean()), loud[0] * frame / rate, (count - 1 - loud[-1]) * frame / rate


def effective_bandwidth(mono: np.ndarray, rate: int, floor_db: float = 50.0) -> float:
    """Highest frequency whose long-term level is within `floor_db` of the 0.2-4 kHz band."""
    n_fft = 4096
    wave = torch.from_numpy(np.ascontiguousarray(mono, dtype=np.float32))
    if wave.numel() < n_fft:
        return rate / 2
    spec = torch.stft(wave, n_fft, n_fft // 2, window=torch.hann_window(n_fft), return_complex=True)
    level = 10 * torch.log10((spec.abs() ** 2).mean(-1).clamp(min=1e-20)).numpy()
    # Smooth over ~100 Hz so single tonal bins neither make nor break the edge.
    width = max(int(100 / (rate / n_fft)), 1)
    padded = np.pad(level, (width // 2, width - 1 - width // 2), mode="edge")
    level = np.convolve(padded, np.ones(width) / width, mode="valid")
    freqs = np.fft.rfftfreq(n_fft, 1 / rate)
    reference = float(np.median(level[(freqs >= 200) & (freqs <= 4000)]))
    above = np.flatnonzero(level > reference - floor_db)
    return float(freqs[above[-1]]) if above.size else 0.0


@functools.lru_cache(maxsize=8)
def _meters(rate: int) -> tuple[IntegratedLoudness, TruePeak]:
    """Built once per sample rate (the K-weighting response depends on it); float32."""
    return IntegratedLoudness(rate).float(), TruePeak().float()


def assess(native: np.ndarray, rate: int, targets: QualityTargets | None = None) -> QualityReport:
    """(channels, samples) float at the file's rate -> the report with its verdict."""
    targets = targets or QualityTargets()
    mono = native.mean(axis=0)
    silence_ratio, leading, trailing = _silence(mono, rate, targets.silence_dbfs)
    wave = torch.from_numpy(np.ascontiguousarray(native, dtype=np.float32)).unsqueeze(0)
    with torch.inference_mode():
        loudness = float(_meters(rate)[0](wave))
        true_peak = float(_meters(rate)[1](wave))
    report = QualityReport(
        clipping_ratio=float((np.abs(native) >= targets.clip_level).mean()),
        silence_ratio=silence_ratio,
        leading_silence_s=leading,
        trailing_silence_s=trailing,
        dc_offset=float(np.abs(native.mean(axis=1)).max()),
        loudness_lufs=loudness,
        true_peak_dbtp=true_peak,
        effective_bandwidth_hz=effective_bandwidth(mono, rate, targets.floor_db),
        nyquist_hz=rate / 2,
    )
    _judge(report, targets)
    return report


def _judge(r: QualityReport, t: QualityTargets) -> None:
    rejects: list[str] = []
    warnings: list[str] = []
    if r.clipping_ratio > t.clipping_reject:
        rejects.append(f"{r.clipping_ratio:.1%} of samples are clipped")
    elif r.clipping_ratio > t.clipping_warn:
        warnings.append(f"{r.clipping_ratio:.3%} of samples are clipped")
    if r.silence_ratio > t.silence_reject:
        rejects.append(f"{r.silence_ratio:.0%} of the audio is silence")
    elif r.silence_ratio > t.silence_warn:
        warnings.append(f"{r.silence_ratio:.0%} of the audio is silence")
    for edge, seconds in (("leading", r.leading_silence_s), ("trailing", r.trailing_silence_s)):
        if seconds > t.edge_silence_warn_s and r.silence_ratio <= t.silence_reject:
            warnings.append(f"{seconds:.1f} s of {edge} silence")
    if r.dc_offset > t.dc_warn:
        warnings.append(f"DC offset of {r.dc_offset:.3f}")
    if math.isfinite(r.loudness_lufs):
        if r.loudness_lufs > t.loudness_lufs + t.loudness_tolerance_lu:
            warnings.append(
                f"integrated loudness {r.loudness_lufs:.1f} LUFS is above the "
                f"{t.loudness_lufs:.0f} LUFS target: streaming playback turns it down "
                f"{r.loudness_lufs - t.loudness_lufs:.1f} dB"
            )
        elif r.loudness_lufs < t.loudness_lufs - t.quiet_tolerance_lu:
            warnings.append(
                f"integrated loudness {r.loudness_lufs:.1f} LUFS is far below the "
                f"{t.loudness_lufs:.0f} LUFS target"
            )
    if r.true_peak_dbtp > t.true_peak_dbtp:
        warnings.append(
            f"true peak {r.true_peak_dbtp:.1f} dBTP exceeds {t.true_peak_dbtp:.0f} dBTP"
        )
    limit = min(t.bandwidth_share * r.nyquist_hz, 18_000.0)
    if r.effective_bandwidth_hz < limit and r.nyquist_hz >= 16_000:
        warnings.append(
            f"content stops at {r.effective_bandwidth_hz / 1000:.1f} kHz of "
            f"{r.nyquist_hz / 1000:.1f} kHz: likely upsampled or transcoded from a lossy file"
        )
    r.reasons = rejects + warnings
    r.verdict = REJECT if rejects else WARNING if warnings else OK
