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
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from scipy.special import expit
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, roc_auc_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from tunelytics.domain.models import Progress
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
FORMAT = "churn-1"


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


@dataclass(frozen=True, slots=True)
class _Linear:
    """A standardised linear score: ((x - mean) / scale) . coef + intercept."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float

    @staticmethod
    def of(pipeline: Pipeline) -> _Linear:
        scaler: StandardScaler = pipeline[0]
        linear: LogisticRegression = pipeline[-1]
        return _Linear(
            np.asarray(scaler.mean_, dtype=np.float64),
            np.asarray(scaler.scale_, dtype=np.float64),
            np.asarray(linear.coef_[0], dtype=np.float64),
            float(linear.intercept_[0]),
        )

    def standardised(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean) / self.scale

    def decision(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.standardised(x) @ self.coef + self.intercept)

    def state(self) -> dict[str, Any]:
        return {
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "coef": self.coef.tolist(),
            "intercept": self.intercept,
        }

    @staticmethod
    def from_state(state: dict[str, Any]) -> _Linear:
        return _Linear(
            np.array(state["mean"], dtype=np.float64),
            np.array(state["scale"], dtype=np.float64),
            np.array(state["coef"], dtype=np.float64),
            float(state["intercept"]),
        )


@dataclass(frozen=True, slots=True)
class _Calibrator:
    """Platt scaling (1 / (1 + exp(a f + b))) or isotonic (a clipped linear interpolation)."""

    method: str
    a: float = 0.0
    b: float = 0.0
    xs: tuple[float, ...] = ()
    ys: tuple[float, ...] = ()

    @staticmethod
    def of(calibrator: Any, method: str) -> _Calibrator:
        if method == "sigmoid":
            return _Calibrator(method, a=float(calibrator.a_), b=float(calibrator.b_))
        return _Calibrator(
            method,
            xs=tuple(float(v) for v in calibrator.X_thresholds_),
            ys=tuple(float(v) for v in calibrator.y_thresholds_),
        )

    def __call__(self, f: np.ndarray) -> np.ndarray:
        if self.method == "sigmoid":
            return np.asarray(expit(-(self.a * f + self.b)))
        return np.interp(f, self.xs, self.ys)

    def state(self) -> dict[str, Any]:
        return {"method": self.method, "a": self.a, "b": self.b, "xs": self.xs, "ys": self.ys}

    @staticmethod
    def from_state(state: dict[str, Any]) -> _Calibrator:
        return _Calibrator(
            state["method"], state["a"], state["b"], tuple(state["xs"]), tuple(state["ys"])
        )


@dataclass(frozen=True, slots=True)
class ChurnScores:
    """Every scored listener of a tenant at one cut-off, and the same ranked riskiest first."""

    as_of: datetime
    by_listener: dict[str, ChurnRisk]
    ranked: list[ChurnRisk]


class ChurnModel:
    """Fit at a cut-off whose next 28 days are known; score any later cut-off.

    Fitting uses scikit-learn; what it learned is kept as plain arrays (the scalers,
    coefficients and calibration maps of each cross-validation fold, averaged as
    CalibratedClassifierCV averages them), so a stored model is JSON, never a pickle.
    """

    def __init__(self, columns: Sequence[int] | None = None) -> None:
        self.columns = list(columns) if columns is not None else list(range(len(FEATURES)))
        self.folds: list[tuple[_Linear, _Calibrator]] = []
        self.explainer: _Linear | None = None
        self.base_rate = 0.0
        # What training measured on its time-based hold-out (numbers), and notes.
        self.metrics: dict[str, Any] = {}

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
        calibrated = CalibratedClassifierCV(base, method=method, cv=folds).fit(x, y)
        self.folds = [
            (_Linear.of(c.estimator), _Calibrator.of(c.calibrators[0], method))
            for c in calibrated.calibrated_classifiers_
        ]
        explainer = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000))
        self.explainer = _Linear.of(explainer.fit(x, y))
        self.base_rate = float(y.mean())
        return self

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        assert self.folds, "fit first"
        x = x[:, self.columns]
        p = np.mean([calibrate(linear.decision(x)) for linear, calibrate in self.folds], axis=0)
        return np.asarray(p)

    def risks(self, ids: Sequence[str], x: np.ndarray, top: int = 3) -> list[ChurnRisk]:
        assert self.explainer is not None, "fit first"
        p = self.probabilities(x)
        contributions = self.explainer.standardised(x[:, self.columns]) * self.explainer.coef
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

    def score(self, histories: Sequence[ListenHistory]) -> list[ChurnScores]:
        """Each history scored at its newest listen: the batch call the model server makes."""
        result = []
        for history in histories:
            now = history.newest
            ids, x = features(history, now)
            risks = self.risks(ids, x)
            result.append(
                ChurnScores(
                    as_of=now,
                    by_listener={r.listener_id: r for r in risks},
                    ranked=sorted(risks, key=lambda r: (-r.probability, r.listener_id)),
                )
            )
        return result

    def to_bytes(self) -> bytes:
        assert self.explainer is not None, "fit first"
        state = {
            "format": FORMAT,
            "features": [FEATURES[c] for c in self.columns],
            "folds": [
                {"linear": lin.state(), "calibrator": cal.state()} for lin, cal in self.folds
            ],
            "explainer": self.explainer.state(),
            "base_rate": self.base_rate,
            "metrics": self.metrics,
        }
        return json.dumps(state).encode()

    @staticmethod
    def from_bytes(data: bytes) -> ChurnModel:
        state = json.loads(data)
        if state.get("format") != FORMAT:
            raise ValueError(f"unsupported churn model format {state.get('format')!r}")
        model = ChurnModel([FEATURES.index(name) for name in state["features"]])
        model.folds = [
            (_Linear.from_state(f["linear"]), _Calibrator.from_state(f["calibrator"]))
            for f in state["folds"]
        ]
        model.explainer = _Linear.from_state(state["explainer"])
        model.base_rate = float(state["base_rate"])
        model.metrics = dict(state["metrics"])
        return model


def labelled(history: ListenHistory, cutoff: datetime) -> tuple[list[str], np.ndarray, np.ndarray]:
    ids, x = features(history, cutoff)
    return ids, x, labels(history, ids, cutoff)


def train_at(history: ListenHistory, now: datetime | None = None) -> tuple[ChurnModel, datetime]:
    """A model whose labels are the 28 days before `now` (default: the newest listen)."""
    now = now or history.newest
    _, x, y = labelled(history, now - HORIZON)
    return ChurnModel().fit(x, y), now


def train_churn(history: ListenHistory, progress: Progress | None = None) -> ChurnModel:
    """The tenant's churn model, with its time-based hold-out measured first.

    Hold-out: a model learned at the cut-off 56 days before the newest listen (labels:
    the 28 days after it) scores the listeners at the cut-off 28 days before, whose next
    28 days are known too: AUC, Brier score (beside the base rate's), a calibration
    table. The served model is then learned at that newer cut-off, on the newest labels.
    Too little history for a hold-out is noted, not faked; too little for the model
    itself raises NotEnoughData.
    """
    step = progress or (lambda _f, _m: None)
    now = history.newest
    _, x_new, y_new = labelled(history, now - HORIZON)
    metrics: dict[str, Any] = {}
    step(0.05, "hold-out: learning at the older cut-off")
    try:
        _, x_old, y_old = labelled(history, now - 2 * HORIZON)
        older = ChurnModel().fit(x_old, y_old)
        if len(y_new) == 0 or y_new.min() == y_new.max():
            raise NotEnoughData("the hold-out window holds only one outcome")
        step(0.4, "hold-out: scoring the newer cut-off")
        held = evaluate(older.probabilities(x_new), y_new)
        recency = ChurnModel(columns=[FEATURES.index("recency_days")]).fit(x_old, y_old)
        metrics = {
            "auc": held.auc,
            "brier": held.brier,
            "brier_base_rate": float(np.mean((older.base_rate - y_new) ** 2)),
            "auc_recency_only": evaluate(recency.probabilities(x_new), y_new).auc,
            "holdout_listeners": len(y_new),
            "holdout_churn_rate": held.base_rate,
            "calibration": [
                {"from": lo, "predicted": p, "observed": o, "listeners": n}
                for lo, p, o, n in held.calibration
            ],
        }
    except NotEnoughData as error:
        metrics = {"holdout": f"not measured: {error}"}
    step(0.7, "learning at the newest cut-off")
    model = ChurnModel().fit(x_new, y_new)
    model.metrics = {**metrics, "training_listeners": len(y_new)}
    step(1.0, "trained")
    return model


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
