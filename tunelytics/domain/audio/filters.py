"""Fixed matrices of the feature frontend, built once in float64 (librosa's formulas).

Slaney mel scale and area-normalised triangles (librosa ``htk=False, norm='slaney'``),
the orthonormal DCT-II, and the Ellis chroma filterbank (librosa ``filters.chroma`` with
tuning 0). Kept in numpy so the modules can cast them to any dtype and device.
"""

from __future__ import annotations

import itertools

import numpy as np

_F_SP = 200.0 / 3
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = np.log(6.4) / 27.0


def hz_to_mel(hz: np.ndarray) -> np.ndarray:
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / _F_SP
    log = _MIN_LOG_MEL + np.log(np.maximum(hz, 1e-12) / _MIN_LOG_HZ) / _LOGSTEP
    return np.where(hz >= _MIN_LOG_HZ, log, linear)


def mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    linear = _F_SP * mel
    log = _MIN_LOG_HZ * np.exp(_LOGSTEP * (mel - _MIN_LOG_MEL))
    return np.where(mel >= _MIN_LOG_MEL, log, linear)


def fft_frequencies(sample_rate: int, n_fft: int) -> np.ndarray:
    return np.fft.rfftfreq(n_fft, 1.0 / sample_rate)


def mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, f_min: float = 0.0, f_max: float | None = None
) -> np.ndarray:
    """(n_mels, 1 + n_fft // 2) triangles, each of unit area in Hz (Slaney)."""
    f_max = sample_rate / 2 if f_max is None else f_max
    fft_f = fft_frequencies(sample_rate, n_fft)
    mel_f = mel_to_hz(
        np.linspace(hz_to_mel(np.array(f_min)), hz_to_mel(np.array(f_max)), n_mels + 2)
    )
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_f[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    enorm = 2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels])
    return weights * enorm[:, None]


def dct_matrix(n_mfcc: int, n_mels: int) -> np.ndarray:
    """(n_mfcc, n_mels) orthonormal DCT-II (scipy ``dct(type=2, norm='ortho')``)."""
    n = np.arange(n_mels)
    k = np.arange(n_mfcc)[:, None]
    basis = np.cos(np.pi * k * (2 * n + 1) / (2 * n_mels)) * np.sqrt(2.0 / n_mels)
    basis[0] /= np.sqrt(2.0)
    return basis


def chroma_filterbank(sample_rate: int, n_fft: int, n_chroma: int = 12) -> np.ndarray:
    """(n_chroma, 1 + n_fft // 2) Gaussian bumps per pitch class, starting at C."""
    frequencies = np.linspace(0, sample_rate, n_fft, endpoint=False)[1:]
    frqbins = n_chroma * np.log2(frequencies / (440.0 / 16))
    frqbins = np.concatenate(([frqbins[0] - 1.5 * n_chroma], frqbins))
    binwidth = np.concatenate((np.maximum(frqbins[1:] - frqbins[:-1], 1.0), [1]))
    d = frqbins[None, :] - np.arange(n_chroma, dtype=np.float64)[:, None]
    half = np.round(n_chroma / 2)
    d = np.remainder(d + half + 10 * n_chroma, n_chroma) - half
    wts = np.exp(-0.5 * (2 * d / binwidth[None, :]) ** 2)
    wts = wts / np.maximum(np.sqrt((wts**2).sum(axis=0, keepdims=True)), np.finfo(float).tiny)
    wts *= np.exp(-0.5 * ((frqbins / n_chroma - 5.0) / 2.0) ** 2)[None, :]
    wts = np.roll(wts, -3 * (n_chroma // 12), axis=0)
    return np.ascontiguousarray(wts[:, : 1 + n_fft // 2])


def contrast_bands(
    sample_rate: int, n_fft: int, f_min: float = 200.0, n_bands: int = 6, quantile: float = 0.02
) -> list[tuple[int, int, int]]:
    """(first bin, end bin, bins averaged at each end) per octave band, as librosa does:
    each band borrows the bin below it and drops its top bin, the last takes the rest."""
    freq = fft_frequencies(sample_rate, n_fft)
    edges = np.zeros(n_bands + 2)
    edges[1:] = f_min * 2.0 ** np.arange(n_bands + 1)
    bands = []
    for k, (low, high) in enumerate(itertools.pairwise(edges)):
        member = (freq >= low) & (freq <= high)
        idx = np.flatnonzero(member)
        if k > 0:
            member[idx[0] - 1] = True
        if k == n_bands:
            member[idx[-1] + 1 :] = True
        rows = np.flatnonzero(member)
        first, end = int(rows[0]), int(rows[-1]) + 1
        if k < n_bands:
            end -= 1
        count = max(int(np.rint(quantile * member.sum())), 1)
        bands.append((first, end, count))
    return bands
