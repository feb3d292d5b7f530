"""Speed of the streaming detector's core on the NAB dev series, one thread: `score_one`
point by point against `score_many` over each whole series, in the same run, both checked
to give the same scores.

    nice -n 10 .venv/bin/python benchmarks/detector.py [--repeat 3] [--files 35]

Reported in points per CPU second of this process (the box is shared, so wall clock
follows its load): the best of `--repeat` rounds of each, the rounds interleaved.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.nab import _series  # noqa: E402
from tunelytics.domain.monitoring.detector import SeriesDetector  # noqa: E402


def one_by_one(at: np.ndarray, values: np.ndarray) -> np.ndarray:
    detector = SeriesDetector()
    return np.array(
        [detector.score_one(v, a) for v, a in zip(values.tolist(), at.tolist(), strict=True)]
    )


def batched(at: np.ndarray, values: np.ndarray) -> np.ndarray:
    return SeriesDetector().score_many(values, at)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--files", type=int, default=35)
    args = parser.parse_args()
    torch.set_num_threads(1)
    series = _series()[: args.files]
    points = sum(len(v) for _, v in series)
    best: dict[str, float] = {}
    results: dict[str, list[np.ndarray]] = {}
    for _ in range(args.repeat):
        for name, run in (("score_one", one_by_one), ("score_many", batched)):
            cpu = time.process_time()
            results[name] = [run(at, values) for at, values in series]
            best[name] = min(best.get(name, np.inf), time.process_time() - cpu)
    same = all(
        np.array_equal(a, b)
        for a, b in zip(results["score_one"], results["score_many"], strict=True)
    )
    print(f"{len(series)} NAB dev series, {points:,} points, one thread, best of {args.repeat}")
    for name, seconds in best.items():
        print(
            f"  {name:11s} {points / seconds:10,.0f} points per CPU second "
            f"({1e6 * seconds / points:5.1f} us/point)"
        )
    print(
        f"  score_many / score_one: {best['score_one'] / best['score_many']:.2f}x; "
        f"same scores: {same}"
    )
    print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
