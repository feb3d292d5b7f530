"""Integrated loudness (ITU-R BS.1770-4 / EBU R128) and true peak, as batched modules.

K-weighting is the two BS.1770 biquads (the pre-filter shelf and the RLB high-pass),
designed for any sample rate from their analogue prototypes (the parameters that give
the standard's 48 kHz coefficients exactly). The filter runs as one FFT convolution
with its impulse response (truncated where it has decayed below 1e-12 of its peak), so a
batch is filtered without a per-sample loop. Gating: 400 ms blocks every 100 ms, an
absolute gate at -70 LUFS and a relative gate 10 LU below the absolutely gated level.

>>> import torch
>>> t = torch.arange(48000 * 5, dtype=torch.float64) / 48000
>>> sine = 0.1 * torch.sin(2 * torch.pi * 997 * t)  # -20 dBFS peak, one channel
>>> round(float(IntegratedLoudness(48000).double()(sine.unsqueeze(0))), 2)
-23.01
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import signal
from torch import Tensor, nn
from torch.nn import functional as F

ABSOLUTE_GATE = -70.0
RELATIVE_GATE = -10.0
# Channel weights for L, R, C, Ls, Rs.
CHANNEL_WEIGHTS = (1.0, 1.0, 1.0, 1.41, 1.41)


def _shelf(rate: float) -> tuple[np.ndarray, np.ndarray]:
    f0, gain_db, q = 1681.974450955533, 3.999843853973347, 0.7071752369554196
    k = math.tan(math.pi * f0 / rate)
    vh = 10.0 ** (gain_db / 20.0)
    vb = vh**0.4996667741545416
    a0 = 1.0 + k / q + k * k
    b = np.array([(vh + vb * k / q + k * k), 2.0 * (k * k - vh), (vh - vb * k / q + k * k)]) / a0
    a = np.array([1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0])
    return b, a


def _high_pass(rate: float) -> tuple[np.ndarray, np.ndarray]:
    f0, q = 38.13547087602444, 0.5003270373238773
    k = math.tan(math.pi * f0 / rate)
    a0 = 1.0 + k / q + k * k
    return np.array([1.0, -2.0, 1.0]), np.array(
        [1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0]
    )


def k_weighting_response(rate: float, tolerance: float = 1e-12) -> np.ndarray:
    """Impulse response of the K-weighting cascade, long enough to have died out."""
    length = int(rate)  # one second is far beyond the high-pass's decay at any rate
    impulse = np.zeros(length)
    impulse[0] = 1.0
    out = signal.lfilter(*_high_pass(rate), signal.lfilter(*_shelf(rate), impulse))
    alive = np.flatnonzero(np.abs(out) > tolerance * np.abs(out).max())
    return out[: alive[-1] + 1]


def _fast_length(n: int) -> int:
    return int(2 ** math.ceil(math.log2(max(n, 2))))


class KWeighting(nn.Module):
    """(batch, [channels,] samples) -> the same shape, K-weighted."""

    def __init__(self, sample_rate: int) -> None:
        super().__init__()
        self.response: Tensor
        response = torch.as_tensor(k_weighting_response(sample_rate))
        self.register_buffer("response", response.to(torch.get_default_dtype()))

    def forward(self, wave: Tensor) -> Tensor:
        n = wave.shape[-1]
        size = _fast_length(n + self.response.numel() - 1)
        spectrum = torch.fft.rfft(wave, size) * torch.fft.rfft(self.response, size)
        return torch.fft.irfft(spectrum, size)[..., :n]


class IntegratedLoudness(nn.Module):
    """(batch, samples) or (batch, channels, samples) -> LUFS (batch,); -inf if all gated."""

    def __init__(self, sample_rate: int, block_seconds: float = 0.4, overlap: float = 0.75):
        super().__init__()
        self.sample_rate = sample_rate
        self.block = round(block_seconds * sample_rate)
        self.step = round(block_seconds * (1 - overlap) * sample_rate)
        self.block_seconds, self.overlap = block_seconds, overlap
        self.weighting = KWeighting(sample_rate)
        self.weights: Tensor
        self.register_buffer(
            "weights", torch.tensor(CHANNEL_WEIGHTS, dtype=torch.get_default_dtype())
        )

    def block_energy(self, wave: Tensor) -> Tensor:
        """Channel-weighted mean square of each gating block, (batch, blocks)."""
        if wave.dim() == 2:
            wave = wave.unsqueeze(1)
        filtered = self.weighting(wave)
        n = wave.shape[-1]
        blocks = block_count(n, self.sample_rate, self.block_seconds, self.overlap)
        if blocks < 1:
            return wave.new_zeros(wave.shape[0], 0)
        need = (blocks - 1) * self.step + self.block
        squared = F.pad(filtered * filtered, (0, max(need - n, 0)))[..., :need]
        channels = wave.shape[1]
        mean_square = F.avg_pool1d(squared, self.block, self.step)
        return (mean_square * self.weights[:channels, None]).sum(1)

    def forward(self, wave: Tensor) -> Tensor:
        return gated_loudness(self.block_energy(wave))


def block_count(
    samples: int, sample_rate: int, block_seconds: float = 0.4, overlap: float = 0.75
) -> int:
    """pyloudnorm's count: a last partial block counts over the full block length."""
    seconds = samples / sample_rate
    return round((seconds - block_seconds) / (block_seconds * (1 - overlap))) + 1


def gated_loudness(z: Tensor) -> Tensor:
    """Block energies (batch, blocks) -> gated integrated loudness (batch,), -inf if silent."""
    level = -0.691 + 10.0 * torch.log10(z.clamp(min=1e-30))
    gated = level >= ABSOLUTE_GATE
    mean_abs = (z * gated).sum(-1) / gated.sum(-1).clamp(min=1)
    relative = -0.691 + 10.0 * torch.log10(mean_abs.clamp(min=1e-30)) + RELATIVE_GATE
    both = gated & (level > relative.unsqueeze(-1))
    mean = (z * both).sum(-1) / both.sum(-1).clamp(min=1)
    lufs = -0.691 + 10.0 * torch.log10(mean.clamp(min=1e-30))
    return torch.where(both.any(-1), lufs, torch.full_like(lufs, -math.inf))


def k_weighted_power_weights(sample_rate: int, n_fft: int) -> np.ndarray:
    """(bins,) weights that turn a Hann-windowed frame's power spectrum into the frame's
    K-weighted mean square: |H_K(f)|^2, doubled for the bins that stand for two, over
    the window's energy (Parseval)."""
    response = np.fft.rfft(k_weighting_response(sample_rate), 1 << 16)
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    grid = np.fft.rfftfreq(1 << 16, 1.0 / sample_rate)
    gain = np.interp(freqs, grid, np.abs(response) ** 2)
    window = np.hanning(n_fft + 1)[:-1]
    doubled = np.full(freqs.size, 2.0)
    doubled[0] = doubled[-1] = 1.0
    return gain * doubled / (n_fft * np.sum(window**2))


class SpectralLoudness(nn.Module):
    """Integrated loudness from an STFT power spectrogram (batch, frames, bins) -> (batch,).

    The frontend's estimate, so loudness costs no second pass over the waveform: each
    frame's K-weighted mean square is its power spectrum weighted by |H_K(f)|^2 (Parseval
    with the window's energy), and a 400 ms block averages the frames it covers, each
    frame standing for the hop around its centre (a difference of the running energy
    integral at the block's ends). Tracks :class:`IntegratedLoudness` within about 0.1 LU
    on music; the quality check uses the exact module.
    """

    def __init__(self, sample_rate: int, n_fft: int = 2048, hop_length: int = 512) -> None:
        super().__init__()
        self.sample_rate, self.hop_length = sample_rate, hop_length
        self.block = round(0.4 * sample_rate)
        self.step = round(0.1 * sample_rate)
        self.weights: Tensor
        weights = torch.as_tensor(k_weighted_power_weights(sample_rate, n_fft))
        self.register_buffer("weights", weights.to(torch.get_default_dtype()))

    def forward(self, power: Tensor, samples: int | None = None) -> Tensor:
        return self.integrate(torch.matmul(power, self.weights), samples)

    def integrate(self, mean_square: Tensor, samples: int | None = None) -> Tensor:
        """Each frame's K-weighted mean square (batch, frames), the power spectrum times
        `weights`, -> LUFS (batch,)."""
        frames = mean_square.shape[1]
        samples = (frames - 1) * self.hop_length if samples is None else samples
        blocks = block_count(samples, self.sample_rate)
        if blocks < 1:
            return torch.full_like(mean_square[:, 0], -math.inf)
        # Frame j stands for [(j - 1/2) hop, (j + 1/2) hop); the running integral is
        # kept in float64 so a quiet block after a loud stretch keeps its digits.
        energy = mean_square.double() * self.hop_length
        integral = F.pad(torch.cumsum(energy, -1), (1, 0))
        start = torch.arange(blocks, device=mean_square.device, dtype=torch.float64) * self.step

        def at(position: Tensor) -> Tensor:
            u = ((position + self.hop_length / 2) / self.hop_length).clamp(0.0, frames)
            j = u.floor().clamp(max=frames - 1)
            index = j.long()
            return integral[:, index] + (u - j) * energy[:, index]

        block_energy = (at(start + self.block) - at(start)) / self.block
        return gated_loudness(block_energy).to(mean_square.dtype)


class TruePeak(nn.Module):
    """(batch, [channels,] samples) -> true peak in dBTP (batch,).

    4x oversampling (BS.1770-4 Annex 2) by a polyphase Kaiser-windowed-sinc interpolator.
    The interpolation runs as GEMMs: the signal viewed as rows of `taps` samples, each
    row with its successor, times a block-Toeplitz matrix holding every phase (a
    1-channel convolution is far slower on CPU). Only rows that can beat the sample peak
    are interpolated: an output is at most `gain` (the largest L1 norm of a column of the
    matrix) times the largest sample it reads, so a row whose two rows' peak times `gain`
    is below the sample peak cannot hold the true peak (the same bound is applied first
    to blocks of 8 rows). The result is exact.
    """

    def __init__(self, factor: int = 4, taps_per_phase: int = 16, beta: float = 8.0) -> None:
        super().__init__()
        self.factor, self.taps = factor, taps_per_phase
        length = factor * taps_per_phase
        t = (np.arange(length) - (length - 1) / 2) / factor
        kernel = np.sinc(t) * np.kaiser(length, beta)
        # Phase p holds taps p, p+factor, ...: output sample m*factor + p.
        phases = np.stack([kernel[p::factor] for p in range(factor)])
        phases = phases / phases.sum(axis=1, keepdims=True)
        # Output (m, p) of a row of `taps` outputs reads inputs m .. m + taps - 1 of the row
        # and its successor: toeplitz[i, m * factor + p] = phases[p, taps - 1 - (i - m)].
        toeplitz = np.zeros((2 * taps_per_phase, taps_per_phase * factor))
        for m in range(taps_per_phase):
            for p in range(factor):
                toeplitz[m : m + taps_per_phase, m * factor + p] = phases[p, ::-1]
        self.toeplitz: Tensor
        self.register_buffer("toeplitz", torch.as_tensor(toeplitz).to(torch.get_default_dtype()))
        # Rounded up a little so float rounding can never exclude a row that matters.
        self.gain = float(np.abs(toeplitz).sum(0).max()) * (1 + 1e-6)
        self.pad = taps_per_phase // 2
        self.block_rows = 8

    def forward(self, wave: Tensor, chunk_rows: int = 16384) -> Tensor:
        batch, n = wave.shape[0], wave.shape[-1]
        flat = wave.reshape(-1, n)
        taps, per_block = self.taps, self.block_rows
        # Row r reads samples r taps - pad ... r taps - pad + 2 taps of the zero-padded
        # signal: its own row and the next. The bound first per block of `per_block`
        # rows (long rows: ~10x cheaper reductions than per row), then per row inside the
        # blocks that can hold the peak.
        size = per_block * taps
        # Sample block b is [b size - pad, (b + 1) size - pad), so row block b (rows
        # b per_block ...) reads sample block b and the first `taps` samples of b + 1.
        lead = min(size - self.pad, n)
        whole = lead + (n - lead) // size * size
        coarse = flat[:, lead:whole].view(flat.shape[0], (whole - lead) // size, size)
        parts = [flat[:, :lead].abs().amax(-1, keepdim=True)]
        parts.append(torch.maximum(coarse.amax(-1), -coarse.amin(-1)))
        if whole < n:
            parts.append(flat[:, whole:].abs().amax(-1, keepdim=True))
        block_peak = torch.cat(parts, -1)
        peak = block_peak.amax(-1)
        reach = torch.maximum(block_peak, F.pad(block_peak[:, 1:], (0, 1)))
        rows = -(-(n + self.pad) // taps)  # rows that read a sample
        row_blocks = -(-rows // per_block)
        reach = F.pad(reach, (0, row_blocks - reach.shape[-1])) * self.gain
        # A silent channel stays silent: no row of it can reach above zero.
        channel, block = ((reach >= peak.unsqueeze(-1)) & (reach > 0)).nonzero().unbind(-1)
        within = torch.arange(per_block, device=wave.device)
        row = (block.unsqueeze(-1) * per_block + within).flatten()
        channel = channel.repeat_interleave(per_block)
        # Each candidate's two rows as one window of the zero-padded signal; rows come
        # grouped by channel (nonzero's order), so one row copy per channel gathers them.
        padded = F.pad(flat, (self.pad, (row_blocks * per_block + 1) * taps - n - self.pad))
        windows = padded.unfold(-1, 2 * taps, taps)
        counts = torch.bincount(channel, minlength=flat.shape[0]).tolist()
        samples = torch.cat(
            [
                windows[index].index_select(0, part)
                for index, part in enumerate(row.split(counts))
                if part.numel()
            ]
            or [padded.new_zeros(0, 2 * taps)]
        )
        keep = samples.abs().amax(-1) * self.gain >= peak[channel]
        channel, samples = channel[keep], samples[keep]
        for first in range(0, samples.shape[0], chunk_rows):
            part = slice(first, first + chunk_rows)
            up = torch.matmul(samples[part], self.toeplitz).abs().amax(-1)
            peak = peak.scatter_reduce(0, channel[part], up, reduce="amax")
        peak = peak.reshape(batch, -1).amax(-1)
        return 20.0 * torch.log10(peak.clamp(min=1e-10))
