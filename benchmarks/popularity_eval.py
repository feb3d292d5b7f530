"""Track popularity on a time-based hold-out: the model beside the naive "the next 7 days
repeat the last 7" baseline, on the demo generator's listens (steady track shares) and on
generated tracks with their own trends (growing, fading, flat; Poisson daily plays with a
weekly season).

Fit on the days before the cut, score the 7 days after it; nothing after the cut is seen.

    nice -n 5 .venv/bin/python benchmarks/popularity_eval.py [--seed 7]
"""

from __future__ import annotations

import argparse
from collections import Counter
from datetime import timedelta

import numpy as np

from tunelytics.domain.demo import DemoSize, generate_demo
from tunelytics.domain.predict.popularity import (
    PopularityEvaluation,
    daily_matrix,
    evaluate_popularity,
)


def demo_counts(seed: int) -> np.ndarray:
    demo = generate_demo(DemoSize(days=56), seed=seed)
    plays = Counter((li.track_id, li.played_at.date()) for li in demo.listens)
    ids = [t.id for t in demo.tracks]
    return daily_matrix(plays, ids, (demo.end - timedelta(days=1)).date(), 56)


def trending_counts(seed: int, tracks: int = 2_000, days: int = 42) -> np.ndarray:
    """Poisson plays: a lognormal base rate, a weekly season, a per-track weekly trend."""
    rng = np.random.default_rng(seed)
    base = rng.lognormal(mean=0.0, sigma=1.2, size=tracks)  # plays per day
    trend = rng.choice([0.0, 0.15, -0.15, 0.4], size=tracks, p=[0.6, 0.15, 0.15, 0.1])
    t = np.arange(days) / 7.0
    season = 1 + 0.3 * np.sin(2 * np.pi * np.arange(days) / 7)
    rate = base[:, None] * np.exp(trend[:, None] * (t - t[-1])) * season
    return rng.poisson(rate).astype(np.float64)


def row(name: str, e: PopularityEvaluation) -> str:
    return (
        f"| {name} | {e.tracks} | {e.mae:.3f} | {e.mae_naive:.3f} | "
        f"{e.spearman:.3f} | {e.spearman_naive:.3f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    print("| data | tracks | MAE model | MAE naive | Spearman model | Spearman naive |")
    print("|---|---:|---:|---:|---:|---:|")
    print(row("demo (56 days, last 7 held out)", evaluate_popularity(demo_counts(args.seed))))
    print(
        row("trending (42 days, last 7 held out)", evaluate_popularity(trending_counts(args.seed)))
    )


if __name__ == "__main__":
    main()
