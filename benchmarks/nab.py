"""The product's detector on the Numenta Anomaly Benchmark (dev subset), through the scorer.

    .venv/bin/python benchmarks/nab.py              # scores, throughput and latency
The scorer can also call `detect` directly:
    python ../shared/tools/nab/score.py --nab ../shared/data/nab --subset dev \
        --python-detector benchmarks/nab.py:detect
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from tunelytics.domain.monitoring.detector import SeriesDetector

SHARED = Path(__file__).resolve().parents[2] / "shared"


def detect(timestamps: np.ndarray, values: np.ndarray) -> np.ndarray:
    detector = SeriesDetector()
    seconds = timestamps.astype("datetime64[ms]").astype(np.int64) / 1000.0
    return np.array(
        [detector.score_one(float(v), float(t)) for t, v in zip(seconds, values, strict=True)]
    )


def main() -> int:
    command = [
        sys.executable, str(SHARED / "tools" / "nab" / "score.py"),
        "--nab", str(SHARED / "data" / "nab"), "--subset", "dev",
        "--python-detector", f"{Path(__file__).resolve()}:detect", *sys.argv[1:],
    ]  # fmt: skip
    return subprocess.call(command)


if __name__ == "__main__":
    raise SystemExit(main())
