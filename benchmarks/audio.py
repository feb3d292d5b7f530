"""Feature frontend throughput against librosa computing the same features the fast way.

    .venv/bin/python benchmarks/audio.py                  # 64 clips x 30 s, 1 and 2 threads
    .venv/bin/python benchmarks/audio.py --clips 8        # a quick iteration
    .venv/bin/python benchmarks/audio.py --graphql        # plus analyzeAudio latency

Both sides compute the whole set from one STFT per clip: log-mel, MFCC, chroma, spectral
centroid/bandwidth/rolloff/flatness/contrast, ZCR, RMS, onset strength, tempo, key,
integrated loudness and true peak. librosa gets the work done its fastest way (one
stft, every feature from S; numba warmed up; BLAS, OpenMP and numba at the measured
thread count); loudness is pyloudnorm and true peak scipy's 4x resample_poly. Figures
are seconds of audio per second of wall time (x real time).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from tunelytics.domain.audio.features import MAJOR_PROFILE, MINOR_PROFILE, AudioFeatures
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


def run_librosa(batch: np.ndarray, threads: int) -> float:
    import numba
    import pyloudnorm

    numba.set_num_threads(threads)
    meter = pyloudnorm.Meter(SR, filter_class="DeMan")
    with threadpool_limits(threads), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        librosa_features(batch[0], meter)  # numba compiles here
        start = time.perf_counter()
        for y in batch:
            librosa_features(y, meter)
        return time.perf_counter() - start


def run_torch(batch: np.ndarray, threads: int, chunk: int) -> float:
    torch.set_num_threads(threads)
    frontend = AudioFeatures(SR)
    wave = torch.from_numpy(batch)
    with torch.inference_mode():
        frontend(wave[:2])
        start = time.perf_counter()
        for first in range(0, wave.shape[0], chunk):
            frontend(wave[first : first + chunk])
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--chunk", type=int, default=8, help="clips per frontend call")
    parser.add_argument("--graphql", action="store_true", help="also time analyzeAudio")
    args = parser.parse_args()
    batch = clips(args.clips, args.seconds)
    audio = args.clips * args.seconds
    print(f"{args.clips} clips x {args.seconds:.0f} s at {SR} Hz, torch {torch.__version__}")
    heads = ("threads", "librosa s", "librosa xRT", "torch s", "torch xRT", "speed-up")
    print(" ".join(f"{h:>11}" for h in heads))
    for threads in args.threads:
        lib = run_librosa(batch, threads)
        tor = run_torch(batch, threads, args.chunk)
        print(
            f"{threads:>11} {lib:>11.2f} {audio / lib:>11.0f} {tor:>11.2f} {audio / tor:>11.0f}"
            f" {lib / tor:>10.2f}x",
            flush=True,
        )
    if args.graphql:
        from audio_api import analyze_latency

        analyze_latency(batch[0], SR)


if __name__ == "__main__":
    main()
