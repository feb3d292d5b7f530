"""Listener segments: k-means on standardised behaviour features, each segment described
in words from its centroid.

Features of each listener with a listen in the range (FEATURES, in this order): listens
per active day, active days, skip rate, evening share (18:00-24:00 UTC), weekend share,
minutes per listen, and whether the plan is paid. They are standardised (z-scores) so no
unit dominates; k is the one of 2..8 with the best silhouette unless given. The words
compare a centroid with the population: a z-score above +0.5 or below -0.5 is notable.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from tunelytics.domain.analytics.activity import Activity
from tunelytics.domain.predict.errors import NotEnoughData

FEATURES = (
    "listens_per_active_day",
    "active_days",
    "skip_rate",
    "evening_share",
    "weekend_share",
    "minutes_per_listen",
    "paid",
)
MAX_K = 12
AUTO_K = range(2, 9)
# At least this many listeners per segment asked for: fewer cannot make a stable segment.
MIN_PER_SEGMENT = 3
NOTABLE = 0.5


@dataclass(frozen=True, slots=True)
class Segment:
    id: int
    size: int
    description: str
    centroid: list[float]  # in FEATURES order, in the features' own units
    listener_ids: list[str]


@dataclass(frozen=True, slots=True)
class Segmentation:
    k: int
    silhouette: float
    features: tuple[str, ...]
    segments: list[Segment]


def feature_matrix(activity: Activity) -> tuple[list[str], np.ndarray]:
    low, high = activity.range.start.date(), activity.range.end.date()
    ids = sorted(activity.totals)
    rows = []
    for listener_id in ids:
        t = activity.totals[listener_id]
        days = sum(1 for d in activity.days_active.get(listener_id, ()) if low <= d < high)
        profile = activity.listeners.get(listener_id)
        rows.append(
            [
                t.listens / max(days, 1),
                days,
                t.skips / t.listens,
                t.evening / t.listens,
                t.weekend / t.listens,
                t.ms_played / t.listens / 60_000,
                1.0 if profile is not None and profile.paid else 0.0,
            ]
        )
    return ids, np.array(rows, dtype=float).reshape(len(ids), len(FEATURES))


def _standardise(x: np.ndarray) -> np.ndarray:
    mean, std = x.mean(axis=0), x.std(axis=0)
    return (x - mean) / np.where(std > 0, std, 1.0)


def describe(z: np.ndarray, plans: Counter[str]) -> str:
    """Words for a centroid in z-scores, e.g. "evening heavy listeners, low skip rate,
    mostly premium"."""
    level = {True: "heavy", False: "light"}
    when = [w for w, i in (("evening", 3), ("weekend", 4)) if z[i] > NOTABLE]
    volume = level[bool(z[0] > 0)] if abs(z[0]) > NOTABLE else "regular"
    words = [" ".join([*when, volume, "listeners"])]
    if abs(z[1]) > NOTABLE:
        words.append("on most days" if z[1] > 0 else "on few days")
    if abs(z[2]) > NOTABLE:
        words.append("high skip rate" if z[2] > 0 else "low skip rate")
    if abs(z[5]) > NOTABLE:
        words.append("long plays" if z[5] > 0 else "short plays")
    plan, count = plans.most_common(1)[0] if plans else ("unknown", 0)
    total = sum(plans.values())
    words.append(f"mostly {plan}" if total and count / total >= 0.5 else "mixed plans")
    return ", ".join(words)


def segments(activity: Activity, k: int | None = None) -> Segmentation:
    """NotEnoughData when the active listeners are too few for k (or for any k)."""
    # Imported here: scikit-learn adds seconds to the server's start-up.
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    if k is not None and not 2 <= k <= MAX_K:
        raise ValueError(f"k: between 2 and {MAX_K}")
    ids, x = feature_matrix(activity)
    n = len(ids)
    wanted = [k] if k is not None else [c for c in AUTO_K if c * MIN_PER_SEGMENT <= n]
    if not wanted or wanted[0] * MIN_PER_SEGMENT > n:
        need = (k or AUTO_K[0]) * MIN_PER_SEGMENT
        raise NotEnoughData(f"{n} listeners with listens in the range; segments need {need}")
    z = _standardise(x)
    if len(np.unique(z, axis=0)) < max(wanted):
        raise NotEnoughData("the listeners' behaviour is too uniform to segment")
    best: tuple[float, int, np.ndarray, np.ndarray] | None = None
    for c in wanted:
        model = KMeans(n_clusters=c, n_init=10, random_state=0).fit(z)
        labels = model.labels_
        score = float(silhouette_score(z, labels)) if len(set(labels)) > 1 else -1.0
        if best is None or score > best[0]:
            best = (score, c, labels, model.cluster_centers_)
    assert best is not None
    score, chosen, labels, centres = best
    found = []
    for label in range(chosen):
        members = [i for i in range(n) if labels[i] == label]
        plans = Counter(
            activity.listeners[ids[i]].plan for i in members if ids[i] in activity.listeners
        )
        found.append(
            (
                len(members),
                describe(centres[label], plans),
                [float(v) for v in x[members].mean(axis=0)],
                [ids[i] for i in members],
            )
        )
    found.sort(key=lambda s: (-s[0], s[3]))
    return Segmentation(
        k=chosen,
        silhouette=score,
        features=FEATURES,
        segments=[Segment(i, *s) for i, s in enumerate(found)],
    )
