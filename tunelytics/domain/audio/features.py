"""The feature frontend: batched torch modules, torchaudio style.

Every fixed matrix (window, mel and chroma filterbanks, DCT, key profiles, K-weighting
response) is a buffer built once, so ``.to(device)`` / ``.double()`` move the whole
frontend. Waveforms are ``(batch, samples)``, frame features ``(batch, ..., frames)``.
The defaults are librosa's (sr 22050, n_fft 2048, hop 512, centred frames with zero
padding, Slaney mel, orthonormal DCT), so the spectral features match librosa's numbers;
the tests state the tolerances.

:class:`AudioFeatures` computes the whole set from one shared STFT:

>>> import torch
>>> frontend = AudioFeatures()
>>> t = torch.arange(22050 * 2) / 22050
>>> wave = (0.5 * torch.sin(2 * torch.pi * 440 * t)).unsqueeze(0)
>>> f = frontend(wave)
>>> f.mel.shape, f.mfcc.shape, f.chroma.shape
(torch.Size([1, 128, 87]), torch.Size([1, 20, 87]), torch.Size([1, 12, 87]))
>>> int(f.chroma.mean(-1).argmax())  # pitch class A
9
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from tunelytics.domain.audio import filters
from tunelytics.domain.audio.loudness import SpectralLoudness, TruePeak

PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
# Krumhansl-Kessler probe-tone profiles, tonic first.
MAJOR_PROFILE = (6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88)
MINOR_PROFILE = (6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17)


def _tiny(x: Tensor) -> float:
    return torch.finfo(x.dtype).tiny


def as_buffer(array: object) -> Tensor:
    """A fixed matrix in the default dtype; ``.double()`` on the module gives float64."""
    return torch.as_tensor(array, dtype=torch.float64).to(torch.get_default_dtype())


def _normalize(x: Tensor, dim: int, p: float) -> Tensor:
    """librosa.util.normalize: columns whose norm is below tiny are left as they are."""
    length = x.abs().amax(dim, keepdim=True) if math.isinf(p) else x.abs().sum(dim, keepdim=True)
    return x / torch.where(length < _tiny(x), torch.ones_like(length), length)


class Spectrogram(nn.Module):
    """Complex STFT, centred frames with zero padding (librosa's default pad_mode)."""

    def __init__(self, n_fft: int = 2048, hop_length: int = 512) -> None:
        super().__init__()
        self.n_fft, self.hop_length = n_fft, hop_length
        self.window: Tensor
        self.register_buffer(
            "window", as_buffer(torch.hann_window(n_fft, periodic=True, dtype=torch.float64))
        )

    def forward(self, wave: Tensor) -> Tensor:
        return torch.stft(
            wave,
            self.n_fft,
            self.hop_length,
            window=self.window,
            center=True,
            pad_mode="constant",
            return_complex=True,
        )


class MelScale(nn.Module):
    """Power spectrogram (batch, bins, frames) -> mel power (batch, n_mels, frames)."""

    def __init__(self, sample_rate: int = 22050, n_fft: int = 2048, n_mels: int = 128) -> None:
        super().__init__()
        self.fb: Tensor
        fb = filters.mel_filterbank(sample_rate, n_fft, n_mels)
        self.register_buffer("fb", as_buffer(fb))

    def forward(self, power: Tensor) -> Tensor:
        return torch.matmul(self.fb, power)


class PowerToDB(nn.Module):
    """10 log10(max(amin, x)), floored at top_db below each item's maximum."""

    def __init__(self, amin: float = 1e-10, top_db: float | None = 80.0) -> None:
        super().__init__()
        self.amin, self.top_db = amin, top_db

    def forward(self, power: Tensor) -> Tensor:
        db = 10.0 * torch.log10(torch.clamp(power, min=self.amin))
        if self.top_db is not None:
            dims = tuple(range(1, db.dim()))
            db = torch.maximum(db, db.amax(dims, keepdim=True) - self.top_db)
        return db


class MFCC(nn.Module):
    """Log-mel (batch, n_mels, frames) in dB -> (batch, n_mfcc, frames)."""

    def __init__(self, n_mfcc: int = 20, n_mels: int = 128) -> None:
        super().__init__()
        self.dct: Tensor
        self.register_buffer("dct", as_buffer(filters.dct_matrix(n_mfcc, n_mels)))

    def forward(self, log_mel: Tensor) -> Tensor:
        return torch.matmul(self.dct, log_mel)


class Chroma(nn.Module):
    """Power spectrogram -> chroma (batch, 12, frames), each frame scaled to max 1."""

    def __init__(self, sample_rate: int = 22050, n_fft: int = 2048) -> None:
        super().__init__()
        self.fb: Tensor
        self.register_buffer("fb", as_buffer(filters.chroma_filterbank(sample_rate, n_fft)))

    def forward(self, power: Tensor) -> Tensor:
        return _normalize(torch.matmul(self.fb, power), -2, math.inf)


class SpectralShape(nn.Module):
    """Magnitude and power spectrograms -> centroid, bandwidth (p=2), 85% rolloff (Hz) and
    flatness, each (batch, frames).

    The bin sums are one small matmul ([1, f, f^2] against the magnitudes); the rolloff
    bin is found per block of bins first, then inside the one block that crosses.
    """

    def __init__(
        self,
        sample_rate: int = 22050,
        n_fft: int = 2048,
        roll_percent: float = 0.85,
        block: int = 32,
    ) -> None:
        super().__init__()
        self.roll_percent, self.block = roll_percent, block
        freqs = filters.fft_frequencies(sample_rate, n_fft)
        bins = freqs.size
        self.n_blocks = -(-bins // block)
        moments = np.stack([np.ones_like(freqs), freqs, freqs**2])
        membership = np.zeros((self.n_blocks, bins))
        membership[np.arange(bins) // block, np.arange(bins)] = 1.0
        self.freqs: Tensor
        self.moments: Tensor
        self.membership: Tensor
        self.register_buffer("freqs", as_buffer(freqs))
        self.register_buffer("moments", as_buffer(moments))
        self.register_buffer("membership", as_buffer(membership))

    def forward(self, magnitude: Tensor, power: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        m0, m1, m2 = torch.matmul(self.moments, magnitude).unbind(-2)
        scale = torch.where(m0 < _tiny(m0), torch.ones_like(m0), m0)
        centroid = m1 / scale
        # sum w (f - c)^2 with w = S / sum S, expanded.
        spread = m2 / scale - 2 * centroid * m1 / scale + centroid**2 * (m0 / scale)
        bandwidth = torch.sqrt(spread.clamp(min=0.0))
        rolloff = self._rolloff(magnitude)
        floored = torch.clamp(power, min=1e-10)
        flatness = torch.exp(torch.log(floored).mean(-2)) / floored.mean(-2)
        return centroid, bandwidth, rolloff, flatness

    def _rolloff(self, magnitude: Tensor) -> Tensor:
        block_sums = torch.matmul(self.membership, magnitude)  # (batch, blocks, frames)
        cumulative = torch.cumsum(block_sums, -2)
        threshold = self.roll_percent * cumulative[..., -1:, :]
        crossing = (cumulative < threshold).sum(-2, keepdim=True).clamp(max=self.n_blocks - 1)
        before = torch.where(
            crossing > 0,
            cumulative.gather(-2, (crossing - 1).clamp(min=0)),
            torch.zeros_like(threshold),
        )
        bins = self.freqs.numel()
        offsets = torch.arange(self.block, device=magnitude.device).view(1, -1, 1)
        index = (crossing * self.block + offsets).clamp(max=bins - 1)
        inside = magnitude.gather(-2, index.expand(magnitude.shape[0], -1, magnitude.shape[-1]))
        inside = torch.where(
            crossing * self.block + offsets < bins, inside, torch.zeros_like(inside)
        )
        below = (before + torch.cumsum(inside, -2)) < threshold
        position = (crossing.squeeze(-2) * self.block + below.sum(-2)).clamp(max=bins - 1)
        return self.freqs[position]


def _extreme_mean(band: Tensor, count: int, largest: bool) -> Tensor:
    """Mean of the `count` largest (or smallest) values along the last dim."""
    if count == 1:
        return band.amax(-1) if largest else band.amin(-1)
    return band.topk(count, -1, largest=largest).values.mean(-1)


class SpectralContrast(nn.Module):
    """Magnitude spectrogram -> peak-minus-valley dB per octave band (batch, 7, frames)."""

    def __init__(self, sample_rate: int = 22050, n_fft: int = 2048) -> None:
        super().__init__()
        self.bands = filters.contrast_bands(sample_rate, n_fft)
        self.to_db = PowerToDB()

    def forward(self, magnitude: Tensor) -> Tensor:
        peaks, valleys = [], []
        for first, end, count in self.bands:
            band = magnitude[:, first:end].mT  # frames x bins: bins contiguous
            peaks.append(_extreme_mean(band, count, largest=True))
            valleys.append(_extreme_mean(band, count, largest=False))
        return self.to_db(torch.stack(peaks, 1)) - self.to_db(torch.stack(valleys, 1))


class FrameEnergy(nn.Module):
    """Waveform -> RMS (zero-padded frames) and zero-crossing rate (edge-padded frames),
    each (batch, frames), librosa's framing."""

    def __init__(self, frame_length: int = 2048, hop_length: int = 512) -> None:
        super().__init__()
        self.frame_length, self.hop_length = frame_length, hop_length

    def forward(self, wave: Tensor) -> tuple[Tensor, Tensor]:
        half = self.frame_length // 2
        squared = F.pad(wave * wave, (half, half)).unsqueeze(1)
        rms = torch.sqrt(F.avg_pool1d(squared, self.frame_length, self.hop_length).squeeze(1))
        edged = torch.cat([wave[:, :1].expand(-1, half), wave, wave[:, -1:].expand(-1, half)], 1)
        signs = torch.signbit(torch.where(edged.abs() <= 1e-10, torch.zeros_like(edged), edged))
        crossing = (signs[:, 1:] != signs[:, :-1]).to(wave.dtype).unsqueeze(1)
        # Within a frame the first sample has no predecessor (librosa's pad=False): a frame
        # sums frame_length - 1 crossings and divides by frame_length.
        zcr = F.avg_pool1d(crossing, self.frame_length - 1, self.hop_length)
        zcr = zcr.squeeze(1) * (self.frame_length - 1) / self.frame_length
        return rms, zcr[..., : rms.shape[-1]]


class OnsetStrength(nn.Module):
    """Log-mel (dB) -> spectral flux (batch, frames), aligned like librosa.onset_strength."""

    def __init__(self, n_fft: int = 2048, hop_length: int = 512) -> None:
        super().__init__()
        self.pad = 1 + n_fft // (2 * hop_length)

    def forward(self, log_mel: Tensor) -> Tensor:
        flux = torch.clamp(log_mel[..., 1:] - log_mel[..., :-1], min=0.0).mean(-2)
        return F.pad(flux, (self.pad, 0))[..., : log_mel.shape[-1]]


class Tempo(nn.Module):
    """Onset envelope -> (bpm, confidence), each (batch,).

    The global autocorrelation of the envelope, weighted by a log-normal prior around
    120 BPM (one octave wide, as librosa's), refined by a parabola through the peak.
    Confidence is the peak's autocorrelation relative to lag zero, in [0, 1].
    """

    def __init__(
        self,
        sample_rate: int = 22050,
        hop_length: int = 512,
        bpm_range: tuple[float, float] = (40.0, 240.0),
    ) -> None:
        super().__init__()
        self.frame_rate = sample_rate / hop_length
        self.min_lag = max(math.floor(60 * self.frame_rate / bpm_range[1]), 1)
        self.max_lag = math.ceil(60 * self.frame_rate / bpm_range[0])
        lags = torch.arange(self.min_lag, self.max_lag + 1, dtype=torch.float64)
        bpm = 60 * self.frame_rate / lags
        self.prior: Tensor
        self.register_buffer("prior", as_buffer(torch.exp(-0.5 * torch.log2(bpm / 120.0) ** 2)))

    def forward(self, onset: Tensor) -> tuple[Tensor, Tensor]:
        centred = onset - onset.mean(-1, keepdim=True)
        n = centred.shape[-1]
        spectrum = torch.fft.rfft(centred, 2 * n)
        acf = torch.fft.irfft(spectrum.real**2 + spectrum.imag**2, 2 * n)[..., :n]
        # Unbiased: each lag averaged over the samples that overlap.
        acf = acf / torch.arange(n, 0, -1, dtype=acf.dtype, device=acf.device)
        top = min(self.max_lag + 2, n - 1)
        window = acf[..., self.min_lag - 1 : top]
        prior = self.prior[: max(window.shape[-1] - 2, 0)]
        scored = window[..., 1 : 1 + prior.numel()] * prior
        best = scored.argmax(-1)
        left = window.gather(-1, best.unsqueeze(-1)).squeeze(-1)
        mid = window.gather(-1, (best + 1).unsqueeze(-1)).squeeze(-1)
        right = window.gather(-1, (best + 2).unsqueeze(-1)).squeeze(-1)
        curvature = left - 2 * mid + right
        shift = torch.where(curvature < 0, 0.5 * (left - right) / curvature, torch.zeros_like(mid))
        lag = self.min_lag + best.to(acf.dtype) + shift.clamp(-0.5, 0.5)
        bpm = 60 * self.frame_rate / lag
        confidence = (mid / acf[..., 0].clamp(min=_tiny(acf))).clamp(0.0, 1.0)
        return bpm, confidence


class Key(nn.Module):
    """Chroma (batch, 12, frames) -> (tonic pitch class, is_minor, confidence), each (batch,).

    Krumhansl-Schmuckler: the mean chroma is correlated with the 24 rotated probe-tone
    profiles; confidence is the best correlation's margin over the runner-up that is not
    the same tonic (so relative major/minor ambiguity shows as low confidence).
    """

    def __init__(self) -> None:
        super().__init__()
        rows = []
        for profile in (MAJOR_PROFILE, MINOR_PROFILE):
            base = torch.tensor(profile, dtype=torch.float64)
            rows += [torch.roll(base, tonic) for tonic in range(12)]
        profiles = torch.stack(rows)
        profiles = profiles - profiles.mean(-1, keepdim=True)
        self.profiles: Tensor
        self.register_buffer("profiles", as_buffer(profiles / profiles.norm(dim=-1, keepdim=True)))

    def forward(self, chroma: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        mean = chroma.mean(-1)
        mean = mean - mean.mean(-1, keepdim=True)
        corr = torch.matmul(
            mean / mean.norm(dim=-1, keepdim=True).clamp(min=_tiny(mean)), self.profiles.T
        )
        top = corr.topk(2, dim=-1)
        best = top.indices[..., 0]
        return best % 12, best >= 12, top.values[..., 0] - top.values[..., 1]


@dataclass
class FeatureSet:
    """Everything the frontend computes for a batch; frame features end in frames."""

    log_mel: Tensor
    mfcc: Tensor
    chroma: Tensor
    centroid: Tensor
    bandwidth: Tensor
    rolloff: Tensor
    flatness: Tensor
    contrast: Tensor
    zcr: Tensor
    rms: Tensor
    onset: Tensor
    tempo: Tensor
    tempo_confidence: Tensor
    key: Tensor
    minor: Tensor
    key_confidence: Tensor
    loudness: Tensor
    true_peak: Tensor

    @property
    def mel(self) -> Tensor:
        return self.log_mel

    def item(self, index: int) -> FeatureSet:
        return FeatureSet(
            **{f.name: getattr(self, f.name)[index : index + 1] for f in fields(self)}
        )


class AudioFeatures(nn.Module):
    """Waveform (batch, samples) at ``sample_rate`` -> :class:`FeatureSet`, from one STFT."""

    def __init__(
        self,
        sample_rate: int = 22050,
        n_fft: int = 2048,
        hop_length: int = 512,
        n_mels: int = 128,
        n_mfcc: int = 20,
    ) -> None:
        super().__init__()
        self.sample_rate, self.n_fft, self.hop_length = sample_rate, n_fft, hop_length
        self.stft = Spectrogram(n_fft, hop_length)
        self.mel_scale = MelScale(sample_rate, n_fft, n_mels)
        self.to_db = PowerToDB()
        self.mfcc = MFCC(n_mfcc, n_mels)
        self.chroma = Chroma(sample_rate, n_fft)
        self.shape = SpectralShape(sample_rate, n_fft)
        self.contrast = SpectralContrast(sample_rate, n_fft)
        self.energy = FrameEnergy(n_fft, hop_length)
        self.onset = OnsetStrength(n_fft, hop_length)
        self.tempo = Tempo(sample_rate, hop_length)
        self.key = Key()
        self.loudness = SpectralLoudness(sample_rate, n_fft, hop_length)
        self.true_peak = TruePeak()

    def forward(self, wave: Tensor) -> FeatureSet:
        spec = self.stft(wave)
        # torch.stft lays frames out contiguously (bins vary fastest): the squares of the
        # interleaved real/imaginary parts are one vectorised pass, unlike complex abs.
        squares = torch.view_as_real(spec).square()
        power = squares[..., 0] + squares[..., 1]
        magnitude = torch.sqrt(power)
        log_mel = self.to_db(self.mel_scale(power))
        chroma = self.chroma(power)
        centroid, bandwidth, rolloff, flatness = self.shape(magnitude, power)
        rms, zcr = self.energy(wave)
        onset = self.onset(log_mel)
        tempo, tempo_confidence = self.tempo(onset)
        key, minor, key_confidence = self.key(chroma)
        return FeatureSet(
            log_mel=log_mel,
            mfcc=self.mfcc(log_mel),
            chroma=chroma,
            centroid=centroid,
            bandwidth=bandwidth,
            rolloff=rolloff,
            flatness=flatness,
            contrast=self.contrast(magnitude),
            zcr=zcr,
            rms=rms,
            onset=onset,
            tempo=tempo,
            tempo_confidence=tempo_confidence,
            key=key,
            minor=minor,
            key_confidence=key_confidence,
            loudness=self.loudness(power, wave.shape[-1]),
            true_peak=self.true_peak(wave),
        )
