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
from tunelytics.domain.audio.loudness import (
    SpectralLoudness,
    TruePeak,
    k_weighted_power_weights,
)

PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
# Krumhansl-Kessler probe-tone profiles, tonic first.
MAJOR_PROFILE = (6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88)
MINOR_PROFILE = (6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17)


def _tiny(x: Tensor) -> float:
    return torch.finfo(x.dtype).tiny


def as_buffer(array: object) -> Tensor:
    """A fixed matrix in the default dtype; ``.double()`` on the module gives float64."""
    return torch.as_tensor(array, dtype=torch.float64).to(torch.get_default_dtype())


def padded_columns(matrix: np.ndarray, multiple: int = 16) -> np.ndarray:
    """(rows, n) -> (rows, n rounded up to `multiple`) with zero columns: MKL's skinny
    GEMM (frames x bins times bins x n) runs 2-3x faster at n = 16 than at 3 or 12."""
    extra = -matrix.shape[1] % multiple
    return np.pad(matrix, ((0, 0), (0, extra)))


def _normalize(x: Tensor, dim: int, p: float) -> Tensor:
    """librosa.util.normalize: columns whose norm is below tiny are left as they are."""
    length = x.abs().amax(dim, keepdim=True) if math.isinf(p) else x.abs().sum(dim, keepdim=True)
    return x / torch.where(length < _tiny(x), torch.ones_like(length), length)


class Spectrogram(nn.Module):
    """Complex STFT (batch, frames, bins), centred frames with zero padding (librosa's
    default pad_mode).

    Frames are cut and windowed in one pass and transformed by one batched rfft, which is
    faster on CPU than ``torch.stft``; bins stay contiguous, so every per-frame reduction
    and filterbank product downstream reads rows.
    """

    def __init__(self, n_fft: int = 2048, hop_length: int = 512) -> None:
        super().__init__()
        self.n_fft, self.hop_length = n_fft, hop_length
        self.window: Tensor
        self.register_buffer(
            "window", as_buffer(torch.hann_window(n_fft, periodic=True, dtype=torch.float64))
        )

    def frames(self, wave: Tensor) -> Tensor:
        """(batch, samples) -> (batch, frames, n_fft), a strided view of the padded wave."""
        half = self.n_fft // 2
        return F.pad(wave, (half, half)).unfold(-1, self.n_fft, self.hop_length)

    def forward(self, wave: Tensor) -> Tensor:
        return torch.fft.rfft(self.frames(wave) * self.window, dim=-1)

    def power_and_magnitude(self, wave: Tensor, block_frames: int = 128) -> tuple[Tensor, Tensor]:
        """|X|^2 and |X| (batch, frames, bins), without the complex spectrogram.

        A block of frames at a time: its windowed frames and spectrum (1 MB each at 128
        frames) stay in the core's cache from the window product to the square root,
        which makes the FFT and the passes after it ~1.6x faster than on the whole
        clip's 10 MB spectrogram. The few ops per block keep eager overhead small, and the
        block's two buffers are reused.
        """
        frames = self.frames(wave)
        batch, count = frames.shape[:2]
        bins = self.n_fft // 2 + 1
        power = wave.new_empty((batch, count, bins))
        magnitude = torch.empty_like(power)
        windowed = spectrum = None  # one block's buffers, reused by every full block
        for first in range(0, count, block_frames):
            size = min(block_frames, count - first)
            if windowed is None or size < block_frames:
                windowed = wave.new_empty((batch, size, self.n_fft))
                spectrum = torch.view_as_complex(wave.new_empty((batch, size, bins, 2)))
            block = slice(first, first + size)
            torch.mul(frames[:, block], self.window, out=windowed)
            squares = torch.view_as_real(torch.fft.rfft(windowed, dim=-1, out=spectrum))
            squares = squares.square_()
            torch.add(squares[..., 0], squares[..., 1], out=power[:, block])
            torch.sqrt(power[:, block], out=magnitude[:, block])
        return power, magnitude


class MelScale(nn.Module):
    """Power spectrogram (batch, frames, bins) -> mel power (batch, frames, n_mels).

    The filterbank is ~1.5% non-zero (every bin feeds at most two triangles): it is
    applied as one small GEMM per group of `group` adjacent mels over the bins that
    group touches, 8x fewer multiply-adds than the dense product, with the same sums
    (16 columns is where MKL's skinny GEMM is fastest).
    """

    def __init__(
        self, sample_rate: int = 22050, n_fft: int = 2048, n_mels: int = 128, group: int = 16
    ) -> None:
        super().__init__()
        fb = filters.mel_filterbank(sample_rate, n_fft, n_mels)
        self.spans: list[tuple[int, int]] = []
        for index, first in enumerate(range(0, n_mels, group)):
            rows = fb[first : first + group]
            used = np.flatnonzero(rows.any(0))
            low, high = (int(used[0]), int(used[-1]) + 1) if used.size else (0, 0)
            self.spans.append((low, high))
            self.register_buffer(f"block{index}", as_buffer(rows[:, low:high].T.copy()))

    def forward(self, power: Tensor) -> Tensor:
        return torch.cat(
            [
                torch.matmul(power[..., low:high], getattr(self, f"block{index}"))
                for index, (low, high) in enumerate(self.spans)
            ],
            -1,
        )


class PowerProjection(nn.Module):
    """Power spectrogram (batch, frames, bins) -> mel power (batch, frames, n_mels) and
    the sums against dense columns (batch, frames, k), in one read of the spectrogram.

    :class:`MelScale`'s per-group GEMMs, each widened by the dense columns for the bins
    it alone reads (the groups' spans overlap by a few bins; each bin's dense weights go
    to one group), so the dense products are the sums of the groups' partial products.
    The frontend's dense columns are the chroma filterbank and the K-weighting: reading
    the 5 MB spectrogram once instead of three times.
    """

    def __init__(
        self,
        dense: np.ndarray,
        sample_rate: int = 22050,
        n_fft: int = 2048,
        n_mels: int = 128,
        group: int = 16,
    ) -> None:
        super().__init__()
        fb = filters.mel_filterbank(sample_rate, n_fft, n_mels)
        bins, self.n_dense = dense.shape
        self.spans: list[tuple[int, int]] = []
        self.widths: list[int] = []
        owned = 0  # dense weights of bins below this are in an earlier group
        starts = range(0, n_mels, group)
        for index, first in enumerate(starts):
            rows = fb[first : first + group]
            used = np.flatnonzero(rows.any(0))
            low = 0 if index == 0 else min(int(used[0]), owned)  # every bin in a span
            high = bins if index == len(starts) - 1 else int(used[-1]) + 1
            block = np.zeros((high - low, rows.shape[0] + self.n_dense))
            block[:, : rows.shape[0]] = rows[:, low:high].T
            block[owned - low :, rows.shape[0] :] = dense[owned:high]
            owned = high
            self.spans.append((low, high))
            self.widths.append(rows.shape[0])
            self.register_buffer(f"block{index}", as_buffer(padded_columns(block)))

    def forward(self, power: Tensor) -> tuple[Tensor, Tensor]:
        mel, dense = [], None
        for index, ((low, high), width) in enumerate(zip(self.spans, self.widths, strict=True)):
            out = torch.matmul(power[..., low:high], getattr(self, f"block{index}"))
            mel.append(out[..., :width])
            part = out[..., width : width + self.n_dense]
            dense = part if dense is None else dense + part
        assert dense is not None
        return torch.cat(mel, -1), dense


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
    """Log-mel (batch, frames, n_mels) in dB -> (batch, frames, n_mfcc)."""

    def __init__(self, n_mfcc: int = 20, n_mels: int = 128) -> None:
        super().__init__()
        self.dct: Tensor
        self.register_buffer("dct", as_buffer(filters.dct_matrix(n_mfcc, n_mels).T.copy()))

    def forward(self, log_mel: Tensor) -> Tensor:
        return torch.matmul(log_mel, self.dct)


class Chroma(nn.Module):
    """Power spectrogram (batch, frames, bins) -> chroma (batch, frames, 12), each frame
    scaled to max 1."""

    def __init__(self, sample_rate: int = 22050, n_fft: int = 2048) -> None:
        super().__init__()
        self.fb: Tensor
        fb = filters.chroma_filterbank(sample_rate, n_fft)
        self.n_chroma = fb.shape[0]
        self.register_buffer("fb", as_buffer(padded_columns(fb.T)))

    def forward(self, power: Tensor) -> Tensor:
        return self.normalised(torch.matmul(power, self.fb)[..., : self.n_chroma])

    @staticmethod
    def normalised(sums: Tensor) -> Tensor:
        """Filterbank sums (batch, frames, 12) -> chroma, each frame scaled to max 1."""
        return _normalize(sums, -1, math.inf)


def _mean_log(x: Tensor) -> Tensor:
    """Mean of log(x) along the last dim, for x >= 1e-10.

    log is the costly part (~1.4 ns per float against ~0.1 for a product), so the logs
    are taken of products of three: exact in real arithmetic, and the products stay
    normal floats while x < 1e12 (1e-30 .. 1e36); larger inputs take one log each.
    """
    n = x.shape[-1]
    third = n // 3
    if third == 0 or float(x.amax()) >= 1e12:
        return x.log().mean(-1)
    product = x[..., :third] * x[..., third : 2 * third]
    product *= x[..., 2 * third : 3 * third]
    return (product.log_().sum(-1) + x[..., 3 * third :].log().sum(-1)) / n


class SpectralShape(nn.Module):
    """Magnitude and power spectrograms (batch, frames, bins) -> centroid, bandwidth
    (p=2), 85% rolloff (Hz) and flatness, each (batch, frames).

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
        self.n_blocks = -(-freqs.size // block)
        self.freqs: Tensor
        self.moments: Tensor
        self.register_buffer("freqs", as_buffer(freqs))
        moments = np.stack([np.ones_like(freqs), freqs, freqs**2], 1)
        self.register_buffer("moments", as_buffer(padded_columns(moments)))

    def forward(
        self, magnitude: Tensor, power: Tensor, scratch: bool = False
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """`scratch`: the caller is done with `power`, which is then floored in place
        (one spectrogram-sized tensor fewer to allocate, fill and keep in cache)."""
        m0, m1, m2 = torch.matmul(magnitude, self.moments)[..., :3].unbind(-1)
        scale = torch.where(m0 < _tiny(m0), torch.ones_like(m0), m0)
        centroid = m1 / scale
        # sum w (f - c)^2 with w = S / sum S, expanded.
        spread = m2 / scale - 2 * centroid * m1 / scale + centroid**2 * (m0 / scale)
        bandwidth = torch.sqrt(spread.clamp(min=0.0))
        rolloff = self._rolloff(magnitude)
        floored = power.clamp_(min=1e-10) if scratch else torch.clamp(power, min=1e-10)
        flatness = torch.exp(_mean_log(floored)) / floored.mean(-1)
        return centroid, bandwidth, rolloff, flatness

    def _rolloff(self, magnitude: Tensor) -> Tensor:
        bins = self.freqs.numel()
        whole = bins // self.block * self.block
        block_sums = magnitude[..., :whole].unflatten(-1, (-1, self.block)).sum(-1)
        if whole < bins:
            block_sums = torch.cat([block_sums, magnitude[..., whole:].sum(-1, keepdim=True)], -1)
        cumulative = torch.cumsum(block_sums, -1)  # (batch, frames, blocks)
        threshold = self.roll_percent * cumulative[..., -1:]
        crossing = (cumulative < threshold).sum(-1, keepdim=True).clamp(max=self.n_blocks - 1)
        before = torch.where(
            crossing > 0,
            cumulative.gather(-1, (crossing - 1).clamp(min=0)),
            torch.zeros_like(threshold),
        )
        index = crossing * self.block + torch.arange(self.block, device=magnitude.device)
        inside = magnitude.gather(-1, index.clamp(max=bins - 1))
        inside = torch.where(index < bins, inside, torch.zeros_like(inside))
        below = (before + torch.cumsum(inside, -1)) < threshold
        position = (crossing.squeeze(-1) * self.block + below.sum(-1)).clamp(max=bins - 1)
        return self.freqs[position]


def _sorted_rows(band: Tensor) -> Tensor:
    """Each row of `band` sorted ascending.

    On CPU by numpy's sort, which numpy 2 vectorises with AVX-512 (x86-simd-sort): ~1.6 ns
    per float32 element here, against ~11 ns for torch.topk at any k and ~45 ns for
    torch.sort, and it releases the GIL, so worker threads sort in parallel.
    """
    numpy_dtype = band.dtype in (torch.float32, torch.float64)
    if band.device.type == "cpu" and numpy_dtype and not band.requires_grad:
        return torch.from_numpy(np.sort(band.numpy(), axis=-1))
    return band.sort(-1).values


class SpectralContrast(nn.Module):
    """Magnitude spectrogram (batch, frames, bins) -> peak-minus-valley dB per octave
    band (batch, frames, 7)."""

    def __init__(self, sample_rate: int = 22050, n_fft: int = 2048) -> None:
        super().__init__()
        self.bands = filters.contrast_bands(sample_rate, n_fft)
        self.to_db = PowerToDB()

    def forward(self, magnitude: Tensor) -> Tensor:
        peaks, valleys = [], []
        for first, end, count in self.bands:
            band = magnitude[..., first:end]
            if count == 1:
                peaks.append(band.amax(-1))
                valleys.append(band.amin(-1))
                continue
            # librosa sorts each band and averages its `count` smallest and largest.
            ordered = _sorted_rows(band)
            peaks.append(ordered[..., -count:].sum(-1) / count)
            valleys.append(ordered[..., :count].sum(-1) / count)
        return self.to_db(torch.stack(peaks, -1)) - self.to_db(torch.stack(valleys, -1))


class FrameEnergy(nn.Module):
    """Waveform -> RMS (zero-padded frames) and zero-crossing rate (edge-padded frames),
    each (batch, frames), librosa's framing.

    A frame is `frame_length // hop_length` whole hops and its centring pad whole hops
    too, so both are sums over the signal's hop-long blocks (one pass over the samples,
    no padded copy of it), padded by zero blocks and added up per frame: no
    4x-overlapping windows.
    """

    def __init__(self, frame_length: int = 2048, hop_length: int = 512) -> None:
        super().__init__()
        if frame_length % (2 * hop_length):
            raise ValueError("frame_length must be an even multiple of hop_length")
        self.frame_length, self.hop_length = frame_length, hop_length
        self.span = frame_length // hop_length
        self.lead = self.span // 2  # the centring pad, in hops

    def _hop_blocks(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """(batch, n) -> whole hops (batch, n // hop, hop) and the partial last hop."""
        whole = x.shape[-1] // self.hop_length * self.hop_length
        blocks = x[:, :whole].unflatten(-1, (-1, self.hop_length))
        return blocks, (x[:, None, whole:] if whole < x.shape[-1] else None)

    def _frame_sums(self, hop_sums: Tensor, frames: int) -> Tensor:
        """Per-hop sums of the unpadded signal (batch, hops) -> per-frame sums (batch, frames)."""
        sums = F.pad(hop_sums, (self.lead, frames + self.span - 1 - self.lead - hop_sums.shape[1]))
        # Shifted adds, not a pooling average: counts stay exact integers.
        total = sums[:, :frames]
        for shift in range(1, self.span):
            total = total + sums[:, shift : shift + frames]
        return total

    def forward(self, wave: Tensor) -> tuple[Tensor, Tensor]:
        frames = 1 + wave.shape[-1] // self.hop_length
        blocks, tail = self._hop_blocks(wave)
        energy = torch.linalg.vecdot(blocks, blocks)
        if tail is not None:
            energy = torch.cat([energy, torch.linalg.vecdot(tail, tail)], -1)
        rms = torch.sqrt(self._frame_sums(energy, frames).clamp(min=0.0) / self.frame_length)
        # librosa zeroes |x| <= 1e-10 and reads the sign bit: negative means x < -1e-10.
        negative = wave < -1e-10
        # crossing[j]: sample j's sign differs from sample j - 1's (none at j = 0; edge
        # padding adds none).
        crossing = F.pad(negative[:, 1:] != negative[:, :-1], (1, 0))
        blocks, tail = self._hop_blocks(crossing)
        counts = blocks.sum(-1, dtype=torch.int32)
        if tail is not None:
            counts = torch.cat([counts, tail.sum(-1, dtype=torch.int32)], -1)
        # Within a frame the first sample has no predecessor (librosa's pad=False): its
        # crossing belongs to the previous frame. Frame f starts at sample (f - lead) hop.
        first = F.pad(crossing[:, :: self.hop_length].int(), (self.lead, frames))[:, :frames]
        counts = self._frame_sums(counts, frames) - first
        return rms, counts.to(wave.dtype) / self.frame_length


class OnsetStrength(nn.Module):
    """Log-mel (batch, frames, n_mels) in dB -> spectral flux (batch, frames), aligned
    like librosa.onset_strength."""

    def __init__(self, n_fft: int = 2048, hop_length: int = 512) -> None:
        super().__init__()
        self.pad = 1 + n_fft // (2 * hop_length)

    def forward(self, log_mel: Tensor) -> Tensor:
        flux = torch.clamp(log_mel[:, 1:] - log_mel[:, :-1], min=0.0).mean(-1)
        return F.pad(flux, (self.pad, 0))[..., : log_mel.shape[1]]


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
        # Mel, chroma and K-weighted frame energy from one read of the power spectrogram.
        dense = np.concatenate(
            [
                filters.chroma_filterbank(sample_rate, n_fft).T,
                k_weighted_power_weights(sample_rate, n_fft)[:, None],
            ],
            1,
        )
        self.project = PowerProjection(dense, sample_rate, n_fft, n_mels)
        self.to_db = PowerToDB()
        self.mfcc = MFCC(n_mfcc, n_mels)
        self.shape = SpectralShape(sample_rate, n_fft)
        self.contrast = SpectralContrast(sample_rate, n_fft)
        self.energy = FrameEnergy(n_fft, hop_length)
        self.onset = OnsetStrength(n_fft, hop_length)
        self.tempo = Tempo(sample_rate, hop_length)
        self.key = Key()
        self.loudness = SpectralLoudness(sample_rate, n_fft, hop_length)
        self.true_peak = TruePeak()

    def forward(self, wave: Tensor) -> FeatureSet:
        # Spectral work runs on (batch, frames, bins) rows; frame features are handed
        # out as (batch, ..., frames) views.
        power, magnitude = self.stft.power_and_magnitude(wave)
        mel_power, dense = self.project(power)
        log_mel = self.to_db(mel_power)
        chroma = Chroma.normalised(dense[..., :-1]).mT
        loudness = self.loudness.integrate(dense[..., -1], wave.shape[-1])
        # The last use of the power spectrogram: flatness floors it in place.
        centroid, bandwidth, rolloff, flatness = self.shape(magnitude, power, scratch=True)
        rms, zcr = self.energy(wave)
        onset = self.onset(log_mel)
        tempo, tempo_confidence = self.tempo(onset)
        key, minor, key_confidence = self.key(chroma)
        return FeatureSet(
            log_mel=log_mel.mT,
            mfcc=self.mfcc(log_mel).mT,
            chroma=chroma,
            centroid=centroid,
            bandwidth=bandwidth,
            rolloff=rolloff,
            flatness=flatness,
            contrast=self.contrast(magnitude).mT,
            zcr=zcr,
            rms=rms,
            onset=onset,
            tempo=tempo,
            tempo_confidence=tempo_confidence,
            key=key,
            minor=minor,
            key_confidence=key_confidence,
            loudness=loudness,
            true_peak=self.true_peak(wave),
        )
