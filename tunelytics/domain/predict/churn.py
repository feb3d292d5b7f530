"""Listener churn: will a listener have no listen in the next 28 days?

Features come from each listener's listens up to a cut-off; the label is whether the 28
days after it hold no listen. The classifier (standardised logistic regression) learns on
a cut-off 28 days before the newest listens, so its labels are known, and is calibrated
by Platt scaling (isotonic once there are enough listeners) with cross-validation. Each
prediction carries its top drivers: the features' contributions to the log-odds.

>>> from datetime import UTC, datetime, timedelta
>>> t0 = datetime(2026, 1, 1, tzinfo=UTC)
>>> rows = [("loyal", t0 + timedelta(days=d)) for d in range(0, 60, 2)] + [("gone", t0)]
>>> history = ListenHistory.of([(who, "tr-1", at, False, 60_000) for who, at in rows])
>>> ids, x = features(history, t0 + timedelta(days=30))
>>> sorted(ids), x.shape[1] == len(FEATURES)
(['gone', 'loyal'], True)
>>> dict(zip(ids, labels(history, ids, t0 + timedelta(days=30)).tolist()))["gone"]
1
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, roc_auc_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from tunelytics.domain.predict.errors import NotEnoughData

HORIZON = timedelta(days=28)
SESSION_GAP_S = 30 * 60
DAY_S = 86_400.0
FEATURES = (
    "recency_days",
    "listens_28d",
    "active_days_28d",
    "trend_14d",
    "sessions_28d",
    "skip_rate",
    "diversity",
    "minutes_per_listen",
    "tenure_days",
)
MIN_LISTENERS = 30


@dataclass(frozen=True, slots=True)
class ListenHistory:
    """Listens as columns, sorted by listener then time."""

    listener: np.ndarray  # str
    track: np.ndarray  # str
    at: np.ndarray  # epoch seconds
    skipped: np.ndarray  # bool
    ms_played: np.ndarray  # int

    @staticmethod
    def of(rows: Iterable[tuple[str, str, datetime, bool, int]]) -> ListenHistory:
        data = list(rows)
        listener = np.array([r[0] for r in data], dtype=object)
        at = np.array([r[2].timestamp() for r in data], dtype=np.float64)
        order = np.lexsort((at, listener.astype(str))) if data else np.arange(0)
        return ListenHistory(
            listener=listener[order],
            track=np.array([r[1] for r in data], dtype=object)[order],
            at=at[order],
            skipped=np.array([r[3] for r in data], dtype=bool)[order],
            ms_played=np.array([r[4] for r in data], dtype=np.int64)[order],
        )

    @property
    def newest(self) -> datetime:
        if len(self.at) == 0:
            raise NotEnoughData("no listens yet")
        return datetime.fromtimestamp(float(self.at.max()), tz=UTC)


def features(history: ListenHistory, cutoff: datetime) -> tuple[list[str], np.ndarray]:
    """One row per listener with a listen before `cutoff`, columns as FEATURES."""
    c = cutoff.timestamp()
    before = history.at < c
    ids: list[str] = []
    rows: list[list[float]] = []
    listener = history.listener[before]
    if len(listener) == 0:
        return ids, np.zeros((0, len(FEATURES)))
    at, track = history.at[before], history.track[before]
    skipped, played = history.skipped[before], history.ms_played[before]
    starts = np.flatnonzero(np.r_[True, listener[1:] != listener[:-1]])
    ends = np.r_[starts[1:], len(listener)]
    for s, e in zip(starts, ends, strict=True):
        t = at[s:e]
        recent = t >= c - 28 * DAY_S
        last14 = int((t >= c - 14 * DAY_S).sum())
        prior14 = int(recent.sum()) - last14
        recent_t = t[recent]
        sessions = int(1 + (np.diff(recent_t) > SESSION_GAP_S).sum()) if len(recent_t) else 0
        ids.append(str(listener[s]))
        rows.append(
            [
                (c - t[-1]) / DAY_S,
                np.log1p(recent.sum()),
                float(len(np.unique(np.floor(recent_t / DAY_S)))),
                np.log1p(last14) - np.log1p(prior14),
                np.log1p(sessions),
                float(skipped[s:e].mean()),
                len(set(track[s:e])) / (e - s),
                float(played[s:e].mean()) / 60_000,
                (c - t[0]) / DAY_S,
            ]
        )
    return ids, np.array(rows, dtype=np.float64)


def labels(history: ListenHistory, ids: Sequence[str], cutoff: datetime) -> np.ndarray:
    """1 when the listener has no listen in [cutoff, cutoff + 28 days)."""
    c = cutoff.timestamp()
    window = (history.at >= c) & (history.at < c + HORIZON.total_seconds())
    active = set(history.listener[window].tolist())
    return np.array([0 if i in active else 1 for i in ids], dtype=np.int64)


@dataclass(frozen=True, slots=True)
class Driver:
    feature: str
    value: float
    contribution: float  # to the log-odds of churn; > 0 raises the risk


@dataclass(frozen=True, slots=True)
class ChurnRisk:
    listener_id: str
    probability: float
    drivers: list[Driver]


class ChurnModel:
    """Fit at a cut-off whose next 28 days are known; score any later cut-off."""

    def __init__(self, columns: Sequence[int] | None = None) -> None:
        self.columns = list(columns) if columns is not None else list(range(len(FEATURES)))
        self.calibrated: CalibratedClassifierCV | None = None
        self.explainer: Pipeline | None = None
        self.base_rate = 0.0

    def fit(self, x: np.ndarray, y: np.ndarray) -> ChurnModel:
        if len(y) < MIN_LISTENERS or y.min() == y.max():
            raise NotEnoughData(
                f"churn needs at least {MIN_LISTENERS} listeners with history and both "
                f"outcomes in the training window; there are {len(y)} "
                f"({int(y.sum())} churned)"
            )
        x = x[:, self.columns]
        base = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000))
        method = "isotonic" if len(y) >= 2_000 else "sigmoid"
        folds = int(min(5, max(2, min(np.bincount(y)))))
        self.calibrated = CalibratedClassifierCV(base, method=method, cv=folds).fit(x, y)
        self.explainer = make_pipeline(
            StandardScaler(), LogisticRegression(C=1.0, max_iter=1000)
        ).fit(x, y)
        self.base_rate = float(y.mean())
        return self

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        assert self.calibrated is not None, "fit first"
        return np.asarray(self.calibrated.predict_proba(x[:, self.columns])[:, 1])

    def risks(self, ids: Sequence[str], x: np.ndarray, top: int = 3) -> list[ChurnRisk]:
        assert self.explainer is not None, "fit first"
        p = self.probabilities(x)
        scaler: StandardScaler = self.explainer[0]
        linear: LogisticRegression = self.explainer[1]
        contributions = scaler.transform(x[:, self.columns]) * linear.coef_[0]
        names = [FEATURES[c] for c in self.columns]
        result = []
        for i, listener_id in enumerate(ids):
            order = np.argsort(-np.abs(contributions[i]))[:top]
            drivers = [
                Driver(names[j], float(x[i, self.columns[j]]), float(contributions[i, j]))
                for j in order
            ]
            result.append(ChurnRisk(listener_id, float(p[i]), drivers))
        return result


def train_at(history: ListenHistory, now: datetime | None = None) -> tuple[ChurnModel, datetime]:
    """A model whose labels are the 28 days before `now` (default: the newest listen)."""
    now = now or history.newest
    cutoff = now - HORIZON
    ids, x = features(history, cutoff)
    return ChurnModel().fit(x, labels(history, ids, cutoff)), now


@dataclass(frozen=True, slots=True)
class Evaluation:
    auc: float
    brier: float
    base_rate: float
    calibration: list[tuple[float, float, float, int]]  # (bin from, predicted, observed, n)


def evaluate(probabilities: np.ndarray, outcomes: np.ndarray, bins: int = 10) -> Evaluation:
    edges = np.linspace(0, 1, bins + 1)
    table = []
    for lo, hi in itertools.pairwise(edges):
        inside = (probabilities >= lo) & ((probabilities < hi) | (hi == 1.0))
        if inside.any():
            table.append(
                (float(lo), float(probabilities[inside].mean()), float(outcomes[inside].mean()),
                 int(inside.sum()))
            )  # fmt: skip
    return Evaluation(
        auc=float(roc_auc_score(outcomes, probabilities)),
        brier=float(brier_score_loss(outcomes, probabilities)),
        base_rate=float(outcomes.mean()),
        calibration=table,
    )
