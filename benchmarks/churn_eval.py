"""Churn model on the demo generator's listens: a time-based hold-out beside a
recency-only baseline (the same calibrated logistic regression on recency alone).

Train: features at day D-56, labels = no listen in days D-56..D-28; test: features at
D-28, labels = no listen in the last 28 days (D = the end of the demo window). Nothing
of the test window is seen in training.

    nice -n 5 .venv/bin/python benchmarks/churn_eval.py [--listeners 1000] [--seed 7]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from tunelytics.domain.demo import DemoSize, generate_demo
from tunelytics.domain.predict.churn import (
    FEATURES,
    HORIZON,
    ChurnModel,
    ListenHistory,
    evaluate,
    features,
    labels,
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--listeners", type=int, default=1_000)
    parser.add_argument("--listens", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    size = DemoSize(listeners=args.listeners, listens=args.listens, days=90)
    demo = generate_demo(size, seed=args.seed)
    history = ListenHistory.of(
        (li.listener_id, li.track_id, li.played_at, li.skipped, li.ms_played) for li in demo.listens
    )
    train_cut, test_cut = demo.end - 2 * HORIZON, demo.end - HORIZON
    train_ids, x_train = features(history, train_cut)
    y_train = labels(history, train_ids, train_cut)
    test_ids, x_test = features(history, test_cut)
    y_test = labels(history, test_ids, test_cut)
    print(
        f"demo: {len(demo.listeners)} listeners, {len(demo.listens)} listens, seed {args.seed}; "
        f"train {len(y_train)} listeners ({y_train.mean():.1%} churn), "
        f"test {len(y_test)} ({y_test.mean():.1%} churn); "
        + time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    )
    results = {}
    for name, columns in (("churn model (all features)", None), ("recency only", [0])):
        model = ChurnModel(columns).fit(x_train, y_train)
        results[name] = evaluate(model.probabilities(x_test), y_test)
    constant = float(np.mean((y_train.mean() - y_test) ** 2))
    print()
    print("| model | AUC | Brier |")
    print("|---|---:|---:|")
    for name, ev in results.items():
        print(f"| {name} | {ev.auc:.3f} | {ev.brier:.4f} |")
    print(f"| training base rate (no model) | 0.500 | {constant:.4f} |")
    for name, ev in results.items():
        print(f"\ncalibration, {name} (test):")
        print("| predicted bin | mean predicted | observed churn | listeners |")
        print("|---|---:|---:|---:|")
        for lo, predicted, observed, n in ev.calibration:
            print(f"| {lo:.1f}-{lo + 0.1:.1f} | {predicted:.3f} | {observed:.3f} | {n} |")
    model = ChurnModel().fit(x_train, y_train)
    top = sorted(model.risks(test_ids, x_test), key=lambda r: -r.probability)[0]
    print(f"\nfeatures: {', '.join(FEATURES)}")
    print(
        f"riskiest test listener {top.listener_id}: p={top.probability:.2f}, drivers "
        + ", ".join(f"{d.feature}={d.value:.2f} ({d.contribution:+.2f})" for d in top.drivers)
    )


if __name__ == "__main__":
    main()
