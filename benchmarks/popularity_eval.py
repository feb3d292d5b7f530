"""Track popularity on a time-based hold-out: the model beside the naive "the next 7 days
repeat the last 7" baseline, on the demo generator's listens (steady track shares) and on
generated tracks with their own trends (growing, fading, flat; Poisson daily plays with a
weekly season).

Fit on the days before the cut, score the 7 days after it; nothing after the cut is seen.
The "tuned" rows are what the POPULARITY trainer records: train_popularity tunes the
smoothing on the weeks before the held-out one, then scores the same held-out week.

    nice -n 5 .venv/bin/python benchmarks/popularity_eval.py [--seed 7]
"""

from __future__ import annotations

import argparse
from collections import Counter
from datetime import date, timedelta

import numpy as np

from tunelytics.domain.demo import DemoSize, generate_demo
from tunelytics.domain.predict.popularity import (
    PRIOR_PLAYS,
    DailyPlays,
    PopularityEvaluation,
    PopularityParameters,
    daily_matrix,
    evaluate_popularity,
    predict_popularity,
    rising_tracks,
    train_popularity,
)


def demo_counts(seed: int, days: int = 56) -> np.ndarray:
    demo = generate_demo(DemoSize(days=days), seed=seed)
    plays = Counter((li.track_id, li.played_at.date()) for li in demo.listens)
    ids = [t.id for t in demo.tracks]
    return daily_matrix(plays, ids, (demo.end - timedelta(days=1)).date(), days)


def rising_check(counts: np.ndarray, params: PopularityParameters) -> str:
    """Tracks called rising at the hold-out cut, and how they really did in the held-out
    week: actual plays (+ the prior) over their 28-day weekly mean (+ the prior)."""
    cut = counts.shape[1] - 7
    p = predict_popularity(counts[:, :cut], params)
    rows = rising_tracks(p, [str(i) for i in range(len(counts))])
    if not rows:
        return "0 rising"
    mean_week = counts[rows, cut - 28 : cut].sum(axis=1) / 4
    ratio = (counts[rows, cut:].sum(axis=1) + PRIOR_PLAYS) / (mean_week + PRIOR_PLAYS)
    return (
        f"{len(rows)} rising; held-out week over their mean week: median "
        f"{np.median(ratio):.2f}, range {ratio.min():.2f}-{ratio.max():.2f}"
    )


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


def tuned(counts: np.ndarray) -> tuple[PopularityParameters, PopularityEvaluation]:
    """The trainer on the same matrix (its last day yesterday of an arbitrary today)."""
    today, days = date(2026, 12, 1), counts.shape[1]
    plays = {
        (f"t{i:05d}", today - timedelta(days=days - j)): int(n)
        for (i, j), n in np.ndenumerate(counts)
        if n
    }
    p = train_popularity(DailyPlays(plays, today)).params
    return p, evaluate_popularity(counts, days - 7, p)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    print("| data | tracks | MAE model | MAE naive | Spearman model | Spearman naive |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, counts in (
        ("demo (56 days, last 7 held out)", demo_counts(args.seed)),
        ("trending (42 days, last 7 held out)", trending_counts(args.seed)),
    ):
        print(row(name, evaluate_popularity(counts)))
        p, held = tuned(counts)
        print(row(f"{name}, tuned ({p.alpha}, {p.damping}, {p.prior_plays})", held))
    counts = demo_counts(args.seed, days=90)
    p, _ = tuned(counts)
    defaults = rising_check(counts, PopularityParameters())
    print(f"90-day demo, rising at the hold-out cut: defaults {defaults}")
    print(f"  tuned ({p.alpha}, {p.damping}, {p.prior_plays}): {rising_check(counts, p)}")


if __name__ == "__main__":
    main()
