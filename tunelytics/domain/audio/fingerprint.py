"""Landmark fingerprints (Wang 2003): spectral peak pairs hashed, matched by offset votes.

Peaks are local maxima of the log spectrogram (below 5 kHz, so a low-passed or lossy
copy keeps them), thinned to the strongest few per second. Each peak (anchor) pairs with
the next few peaks in a target zone ahead of it; a pair's hash packs (f1, f2 - f1, dt).
A tenant's catalogue stores (hash, track, t1). A query clip is identified by the track
whose matching hashes agree on one time offset (t_catalogue - t_query): the height of
that histogram peak is the evidence, and chance matches do not line up.

>>> import numpy as np
>>> from tunelytics.domain.audio.synth import Style, synthesize
>>> track = synthesize(Style(tempo=100), 20.0, 22050, seed=1)
>>> index = MemoryIndex()
>>> index.add("t1", fingerprint(track))
>>> query = fingerprint(track[5 * 22050 : 10 * 22050])
>>> best = identify(query, index.lookup({h for h, _ in query}))
>>> best.track_id, round(best.offset_seconds)
('t1', 5)
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch.nn import functional as F

SAMPLE_RATE = 22050
N_FFT = 2048
HOP = 512
FRAME_SECONDS = HOP / SAMPLE_RATE
MAX_BIN = 465  # ~5 kHz
PEAK_TIME, PEAK_FREQ = 11, 15  # neighbourhood of a local maximum (frames, bins)
PEAKS_PER_SECOND = 30
FAN_OUT = 6
MAX_DT = 63  # frames (6 bits)
MAX_DF = 127  # bins either side (8 bits)


@dataclass(frozen=True)
class Match:
    track_id: str
    votes: int
    offset_seconds: float
    coverage: float  # votes / query hashes


class HashLookup(Protocol):
    """What identification needs from storage: the catalogue rows of these hashes."""

    async def lookup(self, tenant_id: str, hashes: set[int]) -> list[tuple[int, str, int]]: ...


def peaks(wave: np.ndarray) -> np.ndarray:
    """(samples,) at 22050 Hz -> (n, 2) int array of (frame, bin), time-ordered."""
    x = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))
    if x.numel() < N_FFT:
        return np.zeros((0, 2), dtype=np.int64)
    with torch.inference_mode():
        spec = torch.stft(x, N_FFT, HOP, window=torch.hann_window(N_FFT), return_complex=True)
        log = torch.log(spec[:MAX_BIN].abs().clamp(min=1e-6))  # (bins, frames)
        pooled = F.max_pool2d(
            log[None, None], (PEAK_FREQ, PEAK_TIME), 1, (PEAK_FREQ // 2, PEAK_TIME // 2)
        )[0, 0]
        # A peak stands out from its frame's typical level (not just a flat maximum).
        floor = log.median(0, keepdim=True).values + 2.0
        is_peak = (log == pooled) & (log > floor) & (log > np.log(1e-4))
        bins, frames = torch.nonzero(is_peak, as_tuple=True)
        strength = log[bins, frames]
    if bins.numel() == 0:
        return np.zeros((0, 2), dtype=np.int64)
    # The strongest peaks of each ~1 s window, so quiet passages keep theirs.
    second = (frames.double() * FRAME_SECONDS).floor().numpy()
    order = np.lexsort((-strength.numpy(), second))
    grouped = second[order]
    starts = np.r_[0, np.flatnonzero(np.diff(grouped)) + 1]
    rank = np.arange(order.size) - np.repeat(starts, np.diff(np.r_[starts, order.size]))
    chosen = torch.from_numpy(np.sort(order[rank < PEAKS_PER_SECOND]))
    bins, frames = bins[chosen], frames[chosen]
    result = torch.stack([frames, bins], 1).numpy()
    return result[np.lexsort((result[:, 1], result[:, 0]))]


def hash_pair(f1: int, f2: int, dt: int) -> int:
    return (f1 << 14) | ((f2 - f1 + MAX_DF + 1) << 6) | dt


def fingerprint(wave: np.ndarray) -> list[tuple[int, int]]:
    """(samples,) at 22050 Hz -> [(hash, anchor frame)]."""
    points = peaks(wave)
    out: list[tuple[int, int]] = []
    n = len(points)
    for i in range(n):
        t1, f1 = int(points[i, 0]), int(points[i, 1])
        paired = 0
        for j in range(i + 1, n):
            dt = int(points[j, 0]) - t1
            if dt > MAX_DT:
                break
            f2 = int(points[j, 1])
            if dt < 1 or abs(f2 - f1) > MAX_DF:
                continue
            out.append((hash_pair(f1, f2, dt), t1))
            paired += 1
            if paired == FAN_OUT:
                break
    return out


def matches(
    query: list[tuple[int, int]], found: Iterable[tuple[int, str, int]], limit: int = 5
) -> list[Match]:
    """Catalogue rows of the query's hashes -> the best-aligned tracks, best first."""
    by_hash: dict[int, list[int]] = defaultdict(list)
    for h, t in query:
        by_hash[h].append(t)
    votes: dict[str, Counter[int]] = defaultdict(Counter)
    for h, track_id, t in found:
        for tq in by_hash.get(h, ()):
            votes[track_id][t - tq] += 1
    ranked = []
    for track_id, offsets in votes.items():
        # Neighbouring offsets count together: frame timing jitters by one.
        best_offset, best = 0, 0
        for offset, count in offsets.items():
            total = count + offsets.get(offset - 1, 0) + offsets.get(offset + 1, 0)
            if total > best:
                best_offset, best = offset, total
        ranked.append(Match(track_id, best, best_offset * FRAME_SECONDS, best / max(len(query), 1)))
    ranked.sort(key=lambda m: (-m.votes, m.track_id))
    return ranked[:limit]


@dataclass(frozen=True)
class MatchRule:
    """A match is an identification when its aligned votes clear both bars."""

    # On generated material true 5 s matches had >= 100 aligned votes and >= 25% coverage
    # (10 dB SNR noise), the best chance alignments <= 21 votes and <= 4% (benchmarks).
    min_votes: int = 40
    min_coverage: float = 0.08
    duplicate_coverage: float = 0.25

    def identified(self, match: Match | None) -> bool:
        return (
            match is not None
            and match.votes >= self.min_votes
            and match.coverage >= self.min_coverage
        )


def identify(
    query: list[tuple[int, int]],
    found: Iterable[tuple[int, str, int]],
    rule: MatchRule | None = None,
) -> Match | None:
    rule = rule or MatchRule()
    ranked = matches(query, found, limit=1)
    best = ranked[0] if ranked else None
    return best if rule.identified(best) else None


# Speed factors a query is also tried at: a copy played up to 2% fast or slow still
# lines up with its original once the query is stretched back (1% steps leave <= 0.5%).
SPEEDS = (1.0, 0.98, 0.99, 1.01, 1.02)


def speed_variants(
    wave: np.ndarray, speeds: Iterable[float] = SPEEDS
) -> list[tuple[float, list[tuple[int, int]]]]:
    """(speed, hashes of the clip stretched back by that speed) for each speed tried."""
    import soxr

    out = []
    for speed in speeds:
        stretched = wave if speed == 1.0 else soxr.resample(wave, SAMPLE_RATE, SAMPLE_RATE * speed)
        out.append((speed, fingerprint(np.asarray(stretched))))
    return out


def best_of(candidates: Iterable[Match | None], rule: MatchRule | None = None) -> Match | None:
    rule = rule or MatchRule()
    found = [m for m in candidates if m is not None and rule.identified(m)]
    return max(found, key=lambda m: m.votes) if found else None


class MemoryIndex:
    """An in-process catalogue for one tenant (benchmarks, doctests)."""

    def __init__(self) -> None:
        self.rows: dict[int, list[tuple[str, int]]] = defaultdict(list)

    def add(self, track_id: str, hashes: list[tuple[int, int]]) -> None:
        for h, t in hashes:
            self.rows[h].append((track_id, t))

    def lookup(self, hashes: set[int]) -> list[tuple[int, str, int]]:
        return [(h, track, t) for h in hashes for track, t in self.rows.get(h, ())]
