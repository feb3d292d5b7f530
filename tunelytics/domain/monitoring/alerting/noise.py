"""A learned noise model: online logistic regression over hashed alert features.

River-style: `learn_one(x, y)` / `predict_proba_one(x)` on a dict of feature -> value,
explicit serialisable state (`to_state` / `from_state`, plain JSON-able dicts for Mongo).
Features are hashed into 2**bits weights with a stable hash (crc32, not Python's salted
hash) and a sign bit, so the state has a fixed size whatever the labels. Training is
AdaGrad on the log-loss with a little L2; the bias learns the base rate first, which is
where a new model starts.

>>> m = NoiseModel()
>>> for _ in range(30):
...     _ = m.learn_one({"series=flappy": 1.0}, True).learn_one({"series=db": 1.0}, False)
>>> flappy = m.predict_proba_one({"series=flappy": 1.0})
>>> flappy > 0.8 > 0.2 > m.predict_proba_one({"series=db": 1.0})
True
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import numpy as np

from tunelytics.domain.monitoring.alerting.model import RuleKind, Severity


class NoiseModel:
    def __init__(self, bits: int = 12, learning_rate: float = 0.3, l2: float = 1e-4) -> None:
        self.bits = bits
        self.learning_rate = learning_rate
        self.l2 = l2
        self.weights = np.zeros(1 << bits)
        self.squares = np.zeros(1 << bits)  # AdaGrad's sum of squared gradients
        self.bias = 0.0
        self.bias_squares = 0.0
        self.seen = 0
        self.noise_seen = 0
        self._slots: dict[str, tuple[int, float]] = {}

    def _encode(self, x: Mapping[str, float]) -> tuple[np.ndarray, np.ndarray]:
        idx = np.empty(len(x), dtype=np.int64)
        val = np.empty(len(x))
        mask = (1 << self.bits) - 1
        for i, (name, value) in enumerate(x.items()):
            slot = self._slots.get(name)
            if slot is None:
                h = zlib.crc32(name.encode())
                slot = (h & mask, -1.0 if (h >> 31) & 1 else 1.0)
                if len(self._slots) < 100_000:
                    self._slots[name] = slot
            idx[i] = slot[0]
            val[i] = slot[1] * value
        return idx, val

    def _logit(self, idx: np.ndarray, val: np.ndarray) -> float:
        return self.bias + float(np.dot(self.weights[idx], val))

    def predict_proba_one(self, x: Mapping[str, float]) -> float:
        """Probability that an alert with features x is noise."""
        idx, val = self._encode(x)
        z = max(min(self._logit(idx, val), 30.0), -30.0)
        return 1.0 / (1.0 + math.exp(-z))

    def predict_one(self, x: Mapping[str, float]) -> bool:
        return self.predict_proba_one(x) >= 0.5

    def learn_one(self, x: Mapping[str, float], y: bool) -> NoiseModel:
        """One feedback: y=True when operators called the alert noise."""
        idx, val = self._encode(x)
        z = max(min(self._logit(idx, val), 30.0), -30.0)
        error = 1.0 / (1.0 + math.exp(-z)) - (1.0 if y else 0.0)
        # Features sharing a slot (hash collisions) add up: one gradient per slot.
        slots, inverse = np.unique(idx, return_inverse=True)
        g = np.zeros(len(slots))
        np.add.at(g, inverse, error * val)
        g += self.l2 * self.weights[slots]
        self.squares[slots] += g * g
        self.weights[slots] -= self.learning_rate * g / np.sqrt(self.squares[slots] + 1e-8)
        self.bias_squares += error * error
        self.bias -= self.learning_rate * error / math.sqrt(self.bias_squares + 1e-8)
        self.seen += 1
        self.noise_seen += int(y)
        return self

    def to_state(self) -> dict[str, Any]:
        """Plain, sparse state (only the slots that ever learned)."""
        used = np.flatnonzero(self.squares)
        return {
            "version": 1,
            "bits": self.bits,
            "learning_rate": self.learning_rate,
            "l2": self.l2,
            "bias": self.bias,
            "bias_squares": self.bias_squares,
            "seen": self.seen,
            "noise_seen": self.noise_seen,
            "slots": used.tolist(),
            "weights": self.weights[used].tolist(),
            "squares": self.squares[used].tolist(),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> NoiseModel:
        m = cls(int(state["bits"]), float(state["learning_rate"]), float(state["l2"]))
        slots = np.asarray(state["slots"], dtype=np.int64)
        m.weights[slots] = np.asarray(state["weights"], dtype=float)
        m.squares[slots] = np.asarray(state["squares"], dtype=float)
        m.bias = float(state["bias"])
        m.bias_squares = float(state["bias_squares"])
        m.seen = int(state["seen"])
        m.noise_seen = int(state["noise_seen"])
        return m


def alert_features(
    *,
    rule_id: str,
    kind: RuleKind,
    severity: Severity,
    series_id: str,
    series_name: str,
    labels: Mapping[str, str],
    peak_score: float | None,
    strength: float,
    pending_s: float,
    series_count: int,
    at: datetime,
) -> dict[str, float]:
    """The features of an alert when it fires: categorical ones as name=value indicators
    (rule, kind, severity, series, series name, each label, weekday), numeric ones
    scaled to about [0, 1] (peak score, strength, time pending, series in the incident),
    and the hour of day on the unit circle."""
    hour = (at.hour + at.minute / 60.0) * (2 * math.pi / 24.0)
    x: dict[str, float] = {
        f"rule={rule_id}": 1.0,
        f"kind={kind.value}": 1.0,
        f"severity={severity.label}": 1.0,
        f"series={series_id}": 1.0,
        f"name={series_name}": 1.0,
        f"weekday={at.weekday()}": 1.0,
        "hour_sin": math.sin(hour),
        "hour_cos": math.cos(hour),
        "peak_score": 0.0 if peak_score is None else peak_score,
        "strength": strength,
        "pending": math.log1p(max(pending_s, 0.0)) / 10.0,
        "series_count": math.log1p(series_count) / 3.0,
    }
    for key, value in labels.items():
        if key not in ("__name__", "alertname"):
            x[f"label:{key}={value}"] = 1.0
    return x
