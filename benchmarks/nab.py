"""The product's detector on the Numenta Anomaly Benchmark (dev subset), through the scorer.

    .venv/bin/python benchmarks/nab.py                    # scores, throughput and latency
    .venv/bin/python benchmarks/nab.py --check-causal 5   # extra scorer options pass through
The scorer can also call `detect` directly:
    python ../shared/tools/nab/score.py --nab ../shared/data/nab --subset dev \
        --python-detector benchmarks/nab.py:detect

Throughput is the detector core alone (SeriesDetector.score_many over every dev series, one
process, one thread); latency is one score_one call, over the same points.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from tunelytics.domain.monitoring import kernels
from tunelytics.domain.monitoring.detector import SeriesDetector

SHARED = Path(__file__).resolve().parents[2] / "shared"
NAB = SHARED / "data" / "nab"
DEV = ["artificialNoAnomaly", "artificialWithAnomaly", "realKnownCause", "realAWSCloudwatch"]
# The rest of NAB, kept aside as a held-out check of the same configuration (where present).
HOLDOUT = ["realAdExchange", "realTraffic", "realTweets"]
# Published NAB results on exactly this dev subset (standard, low FP, low FN), as the
# scorer's README gives them; None where only the standard profile is quoted.
PUBLISHED: list[tuple[str, float, float | None, float | None]] = [
    ("ARTime", 67.8, 57.8, 73.7),
    ("Numenta HTM", 66.6, 60.8, 71.1),
    ("CAD OSE", 62.2, 57.1, 66.3),
    ("KNN-CAD", 53.0, None, None),
    ("NAB windowed Gaussian", 22.0, None, None),
]


def _seconds(timestamps: np.ndarray) -> np.ndarray:
    return timestamps.astype("datetime64[ms]").astype(np.int64) / 1000.0


def detect(timestamps: np.ndarray, values: np.ndarray) -> np.ndarray:
    return SeriesDetector().score_many(np.asarray(values, dtype=float), _seconds(timestamps))


def _series() -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for category in DEV:
        for path in sorted((NAB / "data" / category).glob("*.csv")):
            frame = pd.read_csv(path)
            stamps = pd.to_datetime(frame["timestamp"]).to_numpy(dtype="datetime64[ns]")
            out.append((_seconds(stamps), frame["value"].to_numpy(dtype=float)))
    return out


def speed() -> tuple[float, float, float, float, int, float]:
    """Points/s of score_many per wall-clock second and per CPU second of this process (on
    a shared box the two differ), p50/p99 microseconds of one score_one call, and the
    seconds the compiled kernels took to compile or load beforehand (as the server does at
    start: not part of the timed scoring)."""
    warm = kernels.warm_up()
    series = _series()
    points = sum(len(v) for _, v in series)
    start, cpu = time.perf_counter(), time.process_time()
    for at, values in series:
        SeriesDetector().score_many(values, at)
    rate = points / (time.perf_counter() - start)
    cpu_rate = points / (time.process_time() - cpu)
    latencies = []
    for at, values in series:
        detector = SeriesDetector()
        for a, v in zip(at.tolist(), values.tolist(), strict=True):
            t0 = time.perf_counter_ns()
            detector.score_one(v, a)
            latencies.append(time.perf_counter_ns() - t0)
    p50, p99 = np.percentile(np.array(latencies) / 1000.0, [50, 99])
    return rate, cpu_rate, float(p50), float(p99), points, warm


def main() -> int:
    torch.set_num_threads(1)
    command = [
        sys.executable, str(SHARED / "tools" / "nab" / "score.py"),
        "--nab", str(NAB), "--subset", "dev",
        "--python-detector", f"{Path(__file__).resolve()}:detect", *sys.argv[1:],
    ]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True)
    sys.stdout.write(run.stdout)
    sys.stderr.write(run.stderr)
    if run.returncode != 0:
        return run.returncode
    found = re.search(r"standard=([\d.-]+) lowFP=([\d.-]+) lowFN=([\d.-]+)", run.stdout)
    if found is None:
        return 1
    ours = tuple(float(x) for x in found.groups())
    missing = [c for c in HOLDOUT if not (NAB / "data" / c).is_dir()]
    if missing:
        holdout = f"held-out check not run: {', '.join(missing)} not in {NAB}"
    else:
        at = command.index("--subset") + 1
        held = subprocess.run(
            [*command[:at], "holdout", *command[at + 1 :]], capture_output=True, text=True
        )
        holdout = held.stdout.strip().splitlines()[-1] if held.returncode == 0 else held.stderr
    rate, cpu_rate, p50, p99, points, warm = speed()

    def cell(x: float | None) -> str:
        return f"{x:8.1f}" if x is not None else "       -"

    print("\nNAB dev (normalised score; higher is better)")
    print(f"{'detector':24s}{'standard':>9s}{'low FP':>9s}{'low FN':>9s}")
    print(f"{'tunelytics (this run)':24s}{cell(ours[0])} {cell(ours[1])} {cell(ours[2])}")
    for name, *profiles in PUBLISHED:
        print(f"{name:24s}{cell(profiles[0])} {cell(profiles[1])} {cell(profiles[2])}")
    print(
        f"\ndetector core (score_many, {points:,} points, one thread): {rate:,.0f} points/s "
        f"wall clock, {cpu_rate:,.0f} points per CPU second; "
        f"score_one latency p50 {p50:.1f} us, p99 {p99:.1f} us; kernels compiled or loaded "
        f"from numba's cache beforehand in {warm:.2f} s"
    )
    print(holdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
