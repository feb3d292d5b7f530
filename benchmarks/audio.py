"""Feature frontend throughput against librosa computing the same features the fast way.

    .venv/bin/python benchmarks/audio.py                  # 64 clips x 30 s, 1 and 2 threads
    .venv/bin/python benchmarks/audio.py --clips 8        # a quick iteration
    .venv/bin/python benchmarks/audio.py --stages         # plus where the frontend's time goes
    .venv/bin/python benchmarks/audio.py --graphql        # plus analyzeAudio latency

Both sides compute the whole set from one STFT per clip: log-mel, MFCC, chroma, spectral
centroid/bandwidth/rolloff/flatness/contrast, ZCR, RMS, onset strength, tempo, key,
integrated loudness and true peak. librosa gets the work done its fastest way (one
stft, every feature from S; numba warmed up); loudness is pyloudnorm and true peak
scipy's 4x resample_poly. The product's frontend takes one clip per call (its working
set then stays in cache). On N threads both sides run the clips on N worker threads,
each library held to one internal thread (BLAS, OpenMP, numba, torch intra-op): the
clips are independent, and on a small box that beats intra-op threads for both.

The box is shared, so the two sides are interleaved: rounds of a few clips, librosa then
the product, then the product then librosa, so load swings hit both alike; trust the
ratio. Figures are seconds of audio per second of wall time (x real time); "others CPU %"
is what other processes used of the whole machine meanwhile (read the absolute figures
only where it is near 0), "load" the 1-minute load average after the row.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from tunelytics.domain.audio.features import (
    MAJOR_PROFILE,
    MINOR_PROFILE,
    AudioFeatures,
    Spectrogram,
)
from tunelytics.domain.audio.synth import Style, synthesize

SR = 22050


def clips(count: int, seconds: float) -> np.ndarray:
    styles = [
        Style(tempo=80 + 7 * (i % 13), tonic=i % 12, minor=bool(i % 2), brightness=(i % 5) / 4)
        for i in range(count)
    ]
    # A few distinct syntheses, tiled: generation is not what is measured.
    distinct = [synthesize(s, seconds, SR, seed=i) for i, s in enumerate(styles[: min(count, 8)])]
    return np.stack([distinct[i % len(distinct)] for i in range(count)]).astype(np.float32)


def librosa_features(y: np.ndarray, meter: object) -> dict[str, object]:
    import librosa
    from scipy import signal

    S = np.abs(librosa.stft(y))
    P = S * S
    log_mel = librosa.power_to_db(librosa.feature.melspectrogram(S=P, sr=SR))
    chroma = librosa.feature.chroma_stft(S=P, sr=SR, tuning=0.0)
    onset = librosa.onset.onset_strength(S=log_mel, sr=SR)
    profiles = np.array([np.roll(p, k) for p in (MAJOR_PROFILE, MINOR_PROFILE) for k in range(12)])
    key = int(np.argmax([np.corrcoef(chroma.mean(1), p)[0, 1] for p in profiles]))
    return {
        "mfcc": librosa.feature.mfcc(S=log_mel),
        "centroid": librosa.feature.spectral_centroid(S=S, sr=SR),
        "bandwidth": librosa.feature.spectral_bandwidth(S=S, sr=SR),
        "rolloff": librosa.feature.spectral_rolloff(S=S, sr=SR),
        "flatness": librosa.feature.spectral_flatness(S=S),
        "contrast": librosa.feature.spectral_contrast(S=S, sr=SR),
        "zcr": librosa.feature.zero_crossing_rate(y),
        "rms": librosa.feature.rms(y=y),
        "tempo": librosa.feature.tempo(onset_envelope=onset, sr=SR),
        "key": key,
        "loudness": meter.integrated_loudness(y),  # type: ignore[attr-defined]
        "true_peak": np.abs(signal.resample_poly(y, 4, 1)).max(),
    }


class Sides:
    """Both implementations, warmed up, each computing one clip per call."""

    def __init__(self) -> None:
        import numba
        import pyloudnorm

        numba.set_num_threads(1)
        torch.set_num_threads(1)
        self.meter = pyloudnorm.Meter(SR, filter_class="DeMan")
        self.frontend = AudioFeatures(SR)
        warm = clips(1, 30.0)
        self.librosa(warm[0])  # numba compiles here
        self.product(warm[0])

    def librosa(self, y: np.ndarray) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            librosa_features(y, self.meter)

    def product(self, y: np.ndarray) -> None:
        with torch.inference_mode():
            self.frontend(torch.from_numpy(y).unsqueeze(0))


def timed(work: Callable[[np.ndarray], None], batch: np.ndarray, pool: ThreadPoolExecutor) -> float:
    start = time.perf_counter()
    list(pool.map(work, batch))
    return time.perf_counter() - start


def compare(sides: Sides, batch: np.ndarray, threads: int, round_clips: int) -> tuple[float, float]:
    """Wall seconds of (librosa, product) over the batch, interleaved by rounds (ABBA)."""
    librosa_s = product_s = 0.0
    with threadpool_limits(1), ThreadPoolExecutor(threads) as pool:
        for number, first in enumerate(range(0, len(batch), round_clips)):
            part = batch[first : first + round_clips]
            if number % 2 == 0:
                librosa_s += timed(sides.librosa, part, pool)
                product_s += timed(sides.product, part, pool)
            else:
                product_s += timed(sides.product, part, pool)
                librosa_s += timed(sides.librosa, part, pool)
    return librosa_s, product_s


def cpu_snapshot() -> tuple[float, float, float]:
    """(wall s, busy CPU s of the whole machine, CPU s of this process)."""
    with open("/proc/stat") as stat:
        jiffies = [int(field) for field in stat.readline().split()[1:]]
    idle = jiffies[3] + jiffies[4]  # idle, iowait
    usage = resource.getrusage(resource.RUSAGE_SELF)
    busy = (sum(jiffies[:8]) - idle) / os.sysconf("SC_CLK_TCK")
    return time.perf_counter(), busy, usage.ru_utime + usage.ru_stime


def others_cpu_percent(before: tuple[float, ...], after: tuple[float, ...]) -> float:
    """CPU that other processes used meanwhile, in % of the whole machine."""
    wall, busy, own = (b - a for a, b in zip(before, after, strict=True))
    return 100 * max(busy - own, 0.0) / (wall * (os.cpu_count() or 1))


def stages(sides: Sides, batch: np.ndarray, seconds: float, rounds: int = 3) -> None:
    """Thread CPU time per frontend stage (one thread; CPU time, so other jobs on the
    box inflate it less than wall time): the median over `rounds` passes of the clips,
    per clip, so a burst of load in one pass does not move it."""
    frontend = sides.frontend
    spent: dict[str, float] = {}

    def timing(name: str, forward: Callable[..., object]) -> Callable[..., object]:
        def run(*args: object, **kwargs: object) -> object:
            start = time.thread_time()
            out = forward(*args, **kwargs)
            spent[name] = spent.get(name, 0.0) + time.thread_time() - start
            return out

        return run

    # Each stage's entry point: a module's forward, or the method the frontend calls.
    entries = [(name, module, "forward") for name, module in frontend.named_children()]
    entries.append(("stft", frontend.stft, "power_and_magnitude"))
    entries.append(("loudness", frontend.loudness, "integrate"))
    for name, module, method in entries:
        setattr(module, method, timing(name, getattr(module, method)))
    passes: list[dict[str, float]] = []
    try:
        for _ in range(rounds):
            spent.clear()
            start = time.thread_time()
            for y in batch:
                sides.product(y)
            total = time.thread_time() - start
            spent["(between stages)"] = total - sum(spent.values())
            spent["total"] = total
            passes.append(dict(spent))
    finally:
        for _, module, method in entries:
            delattr(module, method)  # the class's method again
    per_clip = 1e3 / len(batch)
    median = {name: float(np.median([p[name] for p in passes])) * per_clip for name in passes[0]}
    print(f"\nproduct frontend, thread CPU ms per {seconds:.0f} s clip, median of {rounds} passes:")
    for name, ms in sorted(median.items(), key=lambda item: -item[1]):
        print(f"  {name:<17} {ms:6.2f}")
    print(f"  -> {seconds * 1e3 / median['total']:.0f}x real time per core")
    fft_floor(batch[0], seconds)


def fft_floor(y: np.ndarray, seconds: float, block: int = 128) -> None:
    """The rfft alone, on blocks of windowed frames already in cache: what no frontend
    built on this STFT can go below on this core."""
    stft = Spectrogram()
    with torch.inference_mode():
        frames = stft.frames(torch.from_numpy(y).unsqueeze(0))
        count = frames.shape[1]
        windowed = (frames[:, :block] * stft.window).contiguous()
        best = math.inf
        for _ in range(7):
            start = time.thread_time()
            for _ in range(-(-count // block)):
                torch.fft.rfft(windowed, dim=-1)
            best = min(best, time.thread_time() - start)
    print(
        f"  FFT alone (MKL rfft, hot cache, best of 7): {best * 1e3:.2f} ms per clip"
        f" = {seconds / best:.0f}x real time per core"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--round", type=int, default=4, help="clips per interleaved round")
    parser.add_argument("--stages", action="store_true", help="per-stage CPU time")
    parser.add_argument("--graphql", action="store_true", help="also time analyzeAudio")
    args = parser.parse_args()
    batch = clips(args.clips, args.seconds)
    audio = args.clips * args.seconds
    sides = Sides()
    print(f"{args.clips} clips x {args.seconds:.0f} s at {SR} Hz, torch {torch.__version__}")
    heads = ("threads", "librosa s", "librosa xRT", "torch s", "torch xRT", "speed-up")
    print(" ".join(f"{h:>11}" for h in heads), "  others CPU %  load")
    for threads in args.threads:
        before = cpu_snapshot()
        lib, tor = compare(sides, batch, threads, max(args.round, threads))
        others = others_cpu_percent(before, cpu_snapshot())
        print(
            f"{threads:>11} {lib:>11.2f} {audio / lib:>11.0f} {tor:>11.2f} {audio / tor:>11.0f}"
            f" {lib / tor:>10.2f}x {others:>14.0f} {os.getloadavg()[0]:>5.1f}",
            flush=True,
        )
    if args.stages:
        stages(sides, batch[: min(len(batch), 16)], args.seconds)
    if args.graphql:
        from audio_api import analyze_latency

        analyze_latency(batch[0], SR)


if __name__ == "__main__":
    main()
