"""The noise model learns from operators' feedback on alerts (plain data, seeded)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import numpy as np

from tunelytics.domain.monitoring.alerting import (
    Alert,
    AlertEngine,
    Feedback,
    NoiseModel,
    Rule,
    SeriesSample,
)

T0 = datetime(2026, 11, 1, tzinfo=UTC)
SERIES = [(f"lat-{i}", {"service": svc, "region": reg}) for i, (svc, reg) in enumerate(
    [("api", "eu"), ("api", "us"), ("web", "eu"), ("web", "us"), ("player", "eu"),
     ("player", "us"), ("search", "eu"), ("search", "us")]
)]  # fmt: skip
FLAPPY = "lat-4"
FLAPPY_INDEX = next(i for i, (s, _) in enumerate(SERIES) if s == FLAPPY)


def fire_alerts(engine: AlertEngine, picks: list[int], rng: np.random.Generator) -> list[Alert]:
    """One short breach per pick (a series index), each at its own time: fired alerts."""
    fired = []
    for k, index in enumerate(picks):
        series_id, labels = SERIES[index]
        at = T0 + timedelta(hours=3 * k + float(rng.uniform(0, 2)))
        peak = float(rng.uniform(600, 1500))
        points = [SeriesSample(series_id, "api_latency_ms", labels, at, peak)]
        ev = engine.evaluate(points, [], [], at)
        fired.extend(e.alert for e in ev.events if e.kind.value == "fired")
    return fired


def operator_says_noise(alert: Alert, rng: np.random.Generator) -> bool:
    """Operators find the flappy series' alerts noise 90% of the time, others 10%."""
    return bool(rng.random() < (0.9 if alert.series_id == FLAPPY else 0.1))


def log_loss(p: list[float], y: list[bool]) -> float:
    eps = 1e-12
    return -float(
        np.mean(
            [math.log(max(q, eps) if t else max(1 - q, eps)) for q, t in zip(p, y, strict=True)]
        )
    )


def test_feedback_teaches_the_model_which_alerts_are_noise() -> None:
    rng = np.random.default_rng(7)
    rule = Rule.from_input("t1", {"name": "slow", "kind": "threshold", "threshold": 500,
                                  "selector": "api_latency_ms"})  # fmt: skip
    model = NoiseModel()
    engine = AlertEngine([rule], noise_model=model)
    picks = [FLAPPY_INDEX if rng.random() < 0.35 else int(rng.integers(len(SERIES)))
             for _ in range(500)]  # fmt: skip
    alerts = fire_alerts(engine, picks, rng)
    labels = [operator_says_noise(a, rng) for a in alerts]
    train, test = slice(0, 350), slice(350, None)
    # Before any feedback the model knows nothing: every alert gets the same guess.
    assert {round(a.noise_probability or 0, 6) for a in alerts[:5]} == {0.5}
    for alert, is_noise in zip(alerts[train], labels[train], strict=True):
        engine.record_feedback(alert, Feedback.NOISE if is_noise else Feedback.USEFUL, "ops", T0)
    assert model.seen == 350 and alerts[0].feedback is not None
    # New alerts now carry a learned noise probability.
    flappy_new, steady_new = fire_alerts(engine, [FLAPPY_INDEX, 0], rng)
    assert flappy_new.noise_probability is not None and flappy_new.noise_probability > 0.7
    assert steady_new.noise_probability is not None and steady_new.noise_probability < 0.3
    # Held out: the model beats the prior (the training base rate) on log-loss.
    y_test = labels[test]
    prior = float(np.mean(labels[train]))
    p_model = [model.predict_proba_one(a.features) for a in alerts[test]]
    model_loss, prior_loss = log_loss(p_model, y_test), log_loss([prior] * len(y_test), y_test)
    print(f"held-out log-loss: model {model_loss:.3f}, prior {prior_loss:.3f}")
    assert model_loss < 0.8 * prior_loss, (model_loss, prior_loss)


def test_changing_feedback_teaches_the_new_answer_and_repeats_do_not_count() -> None:
    rng = np.random.default_rng(3)
    rule = Rule.from_input("t1", {"name": "slow", "kind": "threshold", "threshold": 500,
                                  "selector": "api_latency_ms"})  # fmt: skip
    engine = AlertEngine([rule], noise_model=NoiseModel())
    (alert,) = fire_alerts(engine, [1], rng)
    engine.record_feedback(alert, "noise", "ana", T0)
    engine.record_feedback(alert, "noise", "ana", T0)
    assert engine.noise_model is not None and engine.noise_model.seen == 1
    engine.record_feedback(alert, "useful", "bo", T0)
    assert engine.noise_model.seen == 2
    assert alert.feedback is Feedback.USEFUL and alert.feedback_by == "bo"


def test_a_label_signal_is_learned_through_hashed_features() -> None:
    rng = np.random.default_rng(11)
    model = NoiseModel()
    for _ in range(400):
        staging = bool(rng.random() < 0.5)
        x = {"label:env=staging" if staging else "label:env=prod": 1.0,
             "hour_sin": float(rng.uniform(-1, 1)), f"series=s{rng.integers(50)}": 1.0}  # fmt: skip
        model.learn_one(x, staging if rng.random() < 0.9 else not staging)
    assert model.predict_proba_one({"label:env=staging": 1.0, "series=new": 1.0}) > 0.75
    assert model.predict_proba_one({"label:env=prod": 1.0, "series=new": 1.0}) < 0.25


def test_state_round_trips_through_json() -> None:
    model = NoiseModel(bits=10)
    for i in range(50):
        model.learn_one({f"series=s{i % 5}": 1.0, "peak_score": i / 50}, i % 5 == 0)
    state = json.loads(json.dumps(model.to_state()))
    again = NoiseModel.from_state(state)
    x = {"series=s0": 1.0, "peak_score": 0.3}
    assert again.predict_proba_one(x) == model.predict_proba_one(x)
    assert again.learn_one(x, True).predict_proba_one(x) == model.learn_one(
        x, True
    ).predict_proba_one(x)
    assert len(state["slots"]) < 20  # sparse: only slots that learned
