"""The torch feature frontend against librosa / pyloudnorm on the same signals, and
against synthetic signals whose tempo, key, loudness and peak are known.

Tolerances (float64 frontend vs librosa 0.11 on the same STFT settings): relative error
< 1e-5 for mel power, MFCC, chroma, centroid, bandwidth, flatness, RMS, onset strength
(librosa's mel and chroma filterbanks are float32: that bounds the agreement); spectral
contrast < 1e-3 dB; rolloff and zero-crossing rate exact; in float32 < 1e-3 relative.
"""

from __future__ import annotations

import librosa
import numpy as np
import pyloudnorm
import pytest
import torch

from tunelytics.domain.audio.features import AudioFeatures
from tunelytics.domain.audio.loudness import IntegratedLoudness, TruePeak
from tunelytics.domain.audio.synth import Style, synthesize

SR = 22050


def _music(seconds: float = 4.0, seed: int = 0) -> np.ndarray:
    return synthesize(Style(tempo=110, tonic=4, brightness=0.8, noise=0.3), seconds, SR, seed)


@pytest.fixture(scope="module")
def signal() -> np.ndarray:
    return _music()


@pytest.fixture(scope="module")
def ours(signal: np.ndarray):  # type: ignore[no-untyped-def]
    with torch.inference_mode():
        return AudioFeatures(SR).double()(torch.from_numpy(signal)[None])


def _rel(a: object, b: object) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a - b).max() / np.abs(b).max())


def test_spectral_features_match_librosa(signal: np.ndarray, ours) -> None:  # type: ignore[no-untyped-def]
    S = np.abs(librosa.stft(signal))
    P = S**2
    mel = librosa.feature.melspectrogram(S=P, sr=SR)
    log_mel = librosa.power_to_db(mel)
    assert _rel(10 ** (ours.log_mel[0].numpy() / 10), 10 ** (log_mel / 10)) < 1e-5
    assert _rel(ours.mfcc[0], librosa.feature.mfcc(S=log_mel)) < 1e-5
    assert _rel(ours.chroma[0], librosa.feature.chroma_stft(S=P, sr=SR, tuning=0.0)) < 1e-5
    assert _rel(ours.centroid[0], librosa.feature.spectral_centroid(S=S, sr=SR)[0]) < 1e-5
    assert _rel(ours.bandwidth[0], librosa.feature.spectral_bandwidth(S=S, sr=SR)[0]) < 1e-5
    assert _rel(ours.flatness[0], librosa.feature.spectral_flatness(S=S)[0]) < 1e-5
    np.testing.assert_array_equal(
        ours.rolloff[0].numpy(), librosa.feature.spectral_rolloff(S=S, sr=SR)[0]
    )
    contrast = librosa.feature.spectral_contrast(S=S, sr=SR)
    assert np.abs(ours.contrast[0].numpy() - contrast).max() < 1e-3


def test_time_domain_features_match_librosa(signal: np.ndarray, ours) -> None:  # type: ignore[no-untyped-def]
    np.testing.assert_array_equal(
        ours.zcr[0].numpy(), librosa.feature.zero_crossing_rate(signal)[0]
    )
    assert _rel(ours.rms[0], librosa.feature.rms(y=signal)[0]) < 1e-5
    assert _rel(ours.onset[0], librosa.onset.onset_strength(y=signal, sr=SR)) < 1e-5


def test_float32_frontend_stays_close(signal: np.ndarray, ours) -> None:  # type: ignore[no-untyped-def]
    with torch.inference_mode():
        single = AudioFeatures(SR)(torch.from_numpy(signal.astype(np.float32))[None])
    assert single.mfcc.dtype == torch.float32
    for name in ("mfcc", "chroma", "centroid", "bandwidth", "rms"):
        assert _rel(getattr(single, name), getattr(ours, name)) < 1e-3, name


def test_a_batch_gives_each_item_its_own_features() -> None:
    a, b = _music(3.0, seed=1), np.sin(2 * np.pi * 440 * np.arange(3 * SR) / SR) * 0.3
    frontend = AudioFeatures(SR).double()
    with torch.inference_mode():
        both = frontend(torch.from_numpy(np.stack([a, b])))
        alone = frontend(torch.from_numpy(b)[None])
    for name in ("log_mel", "mfcc", "chroma", "contrast", "rms", "loudness", "tempo"):
        torch.testing.assert_close(getattr(both, name)[1:], getattr(alone, name))
    assert not torch.allclose(both.mfcc[0], both.mfcc[1])


@pytest.mark.parametrize("bpm", [92.0, 128.0, 150.0])
def test_tempo_of_a_click_track(bpm: float) -> None:
    clicks = librosa.clicks(times=np.arange(0, 20, 60 / bpm), sr=SR, length=20 * SR)
    clicks = clicks.astype(np.float64)
    with torch.inference_mode():
        f = AudioFeatures(SR).double()(torch.from_numpy(clicks)[None])
    assert abs(float(f.tempo) - bpm) < 1.5
    assert float(f.tempo_confidence) > 0.5


def test_tempo_confidence_is_low_for_noise() -> None:
    noise = np.random.default_rng(3).standard_normal(20 * SR) * 0.1
    with torch.inference_mode():
        f = AudioFeatures(SR).double()(torch.from_numpy(noise)[None])
    assert float(f.tempo_confidence) < 0.3


def _chord_progression(tonic: int, minor: bool) -> np.ndarray:
    """I - IV - V - I in the key, each chord 1 s of three sine-rich tones."""
    third = 3 if minor else 4
    t = np.arange(SR) / SR
    chords = [(0, third, 7), (5, 5 + third, 12), (7, 11, 14), (0, third, 7)]
    out = []
    for chord in chords:
        wave = np.zeros_like(t)
        for step in chord:
            f0 = 261.63 * 2 ** ((tonic + step) / 12)
            wave += sum(np.sin(2 * np.pi * f0 * h * t) / h for h in (1, 2, 3))
        out.append(wave)
    return 0.1 * np.concatenate(out)


@pytest.mark.parametrize(("tonic", "minor"), [(0, False), (9, True), (7, False), (2, True)])
def test_key_and_mode_of_chord_progressions(tonic: int, minor: bool) -> None:
    with torch.inference_mode():
        f = AudioFeatures(SR).double()(torch.from_numpy(_chord_progression(tonic, minor))[None])
    assert (int(f.key), bool(f.minor)) == (tonic, minor)


def test_key_of_generated_music() -> None:
    track = synthesize(Style(tempo=100, tonic=5, minor=False), 12.0, SR, seed=4)
    with torch.inference_mode():
        f = AudioFeatures(SR)(torch.from_numpy(track.astype(np.float32))[None])
    assert (int(f.key), bool(f.minor)) == (5, False)


def test_integrated_loudness_matches_pyloudnorm_and_the_standard() -> None:
    rng = np.random.default_rng(5)
    for rate in (22050, 44100, 48000):
        stereo = _music(6.0, seed=2)[: 6 * SR]
        stereo = np.stack([librosa.resample(stereo, orig_sr=SR, target_sr=rate)] * 2, 1)
        stereo[:, 1] *= 0.5
        stereo += 0.01 * rng.standard_normal(stereo.shape)
        expected = pyloudnorm.Meter(rate, filter_class="DeMan").integrated_loudness(stereo)
        measured = IntegratedLoudness(rate).double()(torch.from_numpy(stereo.T.copy())[None])
        assert abs(float(measured) - expected) < 1e-3, rate
    # BS.1770: a 997 Hz sine at 0 dBFS peak in one channel reads -3.01 LKFS;
    # EBU Tech 3341 case 1: a -23 dBFS 1 kHz sine in both channels reads -23.0 LUFS.
    t = np.arange(48000 * 10) / 48000
    sine = 0.1 * np.sin(2 * np.pi * 997 * t)
    meter = IntegratedLoudness(48000).double()
    assert abs(float(meter(torch.from_numpy(sine)[None])) - (-23.01)) < 0.01
    both = np.stack([10 ** (-23 / 20) * np.sin(2 * np.pi * 1000 * t)] * 2)
    assert abs(float(meter(torch.from_numpy(both)[None])) - (-23.0)) < 0.05
    assert float(meter(torch.zeros(1, 48000 * 2, dtype=torch.float64))) == -np.inf


def test_frontend_loudness_tracks_the_exact_meter() -> None:
    for seed in range(3):
        track = _music(8.0, seed=seed) * (0.2 + 0.3 * seed)
        exact = pyloudnorm.Meter(SR, filter_class="DeMan").integrated_loudness(track)
        with torch.inference_mode():
            f = AudioFeatures(SR).double()(torch.from_numpy(track)[None])
        assert abs(float(f.loudness) - exact) < 0.2


def test_true_peak_finds_inter_sample_peaks() -> None:
    t = np.arange(44100) / 44100
    # At fs/4 with a 45 degree phase every sample sits at 0.707: sample peak -3.01 dB.
    quarter = np.sin(2 * np.pi * 11025 * t + np.pi / 4)
    peak = float(TruePeak().double()(torch.from_numpy(quarter)[None]))
    assert abs(peak - 0.0) < 0.1
    low = 0.5 * np.sin(2 * np.pi * 997 * t + 0.3)
    assert abs(float(TruePeak().double()(torch.from_numpy(low)[None])) - 20 * np.log10(0.5)) < 0.01
    # Channels: the loudest channel decides.
    stereo = torch.from_numpy(np.stack([low, quarter]))[None]
    assert abs(float(TruePeak().double()(stereo))) < 0.1


def test_contrast_matches_librosa_with_ties_and_silent_frames() -> None:
    # Magnitudes on a coarse grid tie often, a run of equal loud bins fills a band's top,
    # silent frames tie everywhere. The CPU path sorts with numpy; the autograd path with
    # torch.sort: both must give librosa's peaks and valleys.
    from tunelytics.domain.audio.features import SpectralContrast

    rng = np.random.default_rng(7)
    magnitude = np.round(rng.random((1, 60, 1025)) * 8) / 8
    magnitude[0, :, 600:612] = 9.0
    magnitude[0, :5] = 0.0
    reference = librosa.feature.spectral_contrast(S=magnitude[0].T, sr=SR)
    contrast = SpectralContrast(SR).double()
    with torch.inference_mode():
        ours = contrast(torch.from_numpy(magnitude))[0].T.numpy()
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-9)
    tracked = torch.from_numpy(magnitude).requires_grad_()
    np.testing.assert_allclose(contrast(tracked)[0].T.detach().numpy(), ours, rtol=0, atol=1e-12)


def test_true_peak_skips_only_rows_that_cannot_hold_the_peak() -> None:
    # Every row interpolated (the reference) against the frontend's pruned search, on a
    # loud clipped clip and on quiet noise with one transient.
    meter = TruePeak().double()
    loud = np.clip(_music(3.0, seed=6) * 4, -1, 1)
    quiet = np.random.default_rng(8).standard_normal(3 * SR) * 0.01
    quiet[SR] = 0.5
    for wave in (loud, quiet, loud[:50], quiet[SR - 1000 : SR + 31]):
        x = torch.from_numpy(wave)[None]
        n, taps = x.shape[-1], meter.taps
        rows = -(-(n + 1) // taps)
        padded = torch.nn.functional.pad(x, (meter.pad, (rows + 1) * taps - n - meter.pad))
        view = padded.view(1, rows + 1, taps)
        up = view[:, :-1] @ meter.toeplitz[:taps] + view[:, 1:] @ meter.toeplitz[taps:]
        reference = max(float(up.abs().max()), float(x.abs().max()))
        assert float(meter(x)) == pytest.approx(20 * np.log10(reference), abs=1e-12)
