"""Churn: features and labels from listens, a calibrated model stored as plain numbers,
its time-based hold-out, drivers, serving from the registry, refusals."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from tests.conftest import SMALL
from tests.helpers import Api, codes, token
from tests.predict_training import finished, start, train
from tunelytics.domain.auth import Role
from tunelytics.domain.demo import DemoSize
from tunelytics.domain.predict import NotEnoughData
from tunelytics.domain.predict.churn import (
    FEATURES,
    ChurnModel,
    ListenHistory,
    evaluate,
    features,
    labels,
    train_at,
    train_churn,
)
from tunelytics.seeding import seed_demo
from tunelytics.storage import Storage

T0 = datetime(2026, 1, 1, tzinfo=UTC)
COL = {name: i for i, name in enumerate(FEATURES)}


def test_features_and_labels_of_a_hand_made_history() -> None:
    cut = T0 + timedelta(days=30)
    rows = [
        # Two sessions 10 days before the cut (gap 2 h), one skip, two distinct tracks.
        ("a", "t1", cut - timedelta(days=10), False, 120_000),
        ("a", "t2", cut - timedelta(days=10, minutes=-5), True, 10_000),
        ("a", "t1", cut - timedelta(days=10, hours=-2), False, 110_000),
        # 20 days before the cut: in the earlier 14 days of the 28.
        ("b", "t3", cut - timedelta(days=20), False, 60_000),
        ("b", "t3", cut + timedelta(days=3), False, 60_000),  # b comes back after the cut
        ("c", "t1", cut + timedelta(days=1), False, 60_000),  # only after the cut: no row
    ]
    history = ListenHistory.of(rows)
    ids, x = features(history, cut)
    assert ids == ["a", "b"]
    a, b = x
    assert a[COL["recency_days"]] == pytest.approx(10 - 2 / 24)
    assert a[COL["listens_28d"]] == pytest.approx(np.log1p(3))
    assert a[COL["sessions_28d"]] == pytest.approx(np.log1p(2))
    assert a[COL["active_days_28d"]] == 1
    assert a[COL["skip_rate"]] == pytest.approx(1 / 3)
    assert a[COL["diversity"]] == pytest.approx(2 / 3)
    assert a[COL["trend_14d"]] == pytest.approx(np.log1p(3))
    assert b[COL["trend_14d"]] == pytest.approx(-np.log1p(1))
    assert b[COL["tenure_days"]] == pytest.approx(20)
    assert labels(history, ids, cut).tolist() == [1, 0]


def population(seed: int, n: int = 600) -> ListenHistory:
    """Listeners at different activity levels; some fade out (their rate decays)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        rate = rng.lognormal(-0.5, 1.0)  # listens per day
        fade = rng.random() < 0.3
        half_life = rng.uniform(5, 30)
        for day in range(120):
            r = rate * (0.5 ** (day / half_life) if fade else 1.0)
            for _ in range(rng.poisson(r)):
                at = T0 + timedelta(days=day, seconds=int(rng.integers(0, 86_400)))
                rows.append((f"l{i}", f"t{rng.integers(0, 50)}", at, bool(rng.random() < 0.2),
                             60_000))  # fmt: skip
    return ListenHistory.of(rows)


def test_a_held_out_cut_off_is_ranked_and_calibrated() -> None:
    history = population(1)
    train_cut, test_cut = T0 + timedelta(days=60), T0 + timedelta(days=88)
    ids, x = features(history, train_cut)
    model = ChurnModel().fit(x, labels(history, ids, train_cut))
    test_ids, x_test = features(history, test_cut)
    y = labels(history, test_ids, test_cut)
    full = evaluate(model.probabilities(x_test), y)
    assert full.auc > 0.8
    # Calibrated: the mean predicted risk is near the observed churn rate.
    assert abs(model.probabilities(x_test).mean() - y.mean()) < 0.06
    assert full.brier < float(np.mean((y.mean() - y) ** 2))
    assert sum(n for *_, n in full.calibration) == len(y)


def test_each_risk_has_its_top_drivers() -> None:
    history = population(2, n=300)
    model, now = train_at(history)
    ids, x = features(history, now)
    risks = model.risks(ids, x)
    assert [r.listener_id for r in risks] == ids
    for risk in risks:
        assert 0 <= risk.probability <= 1
        assert len(risk.drivers) == 3
        sizes = [abs(d.contribution) for d in risk.drivers]
        assert sizes == sorted(sizes, reverse=True)
    # Whoever has been away longest is riskier than whoever listened today.
    recency = x[:, COL["recency_days"]]
    by_id = {r.listener_id: r.probability for r in risks}
    assert by_id[ids[int(np.argmax(recency))]] > by_id[ids[int(np.argmin(recency))]]


def test_too_little_history_is_refused() -> None:
    rows = [(f"l{i}", "t", T0 + timedelta(days=i), False, 1) for i in range(10)]
    history = ListenHistory.of(rows)
    with pytest.raises(NotEnoughData, match="at least"):
        train_at(history, T0 + timedelta(days=40))
    with pytest.raises(NotEnoughData):
        ListenHistory.of([]).newest  # noqa: B018


def test_a_stored_model_scores_exactly_as_scikit_learn_did() -> None:
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    history = population(3, n=300)
    cut = T0 + timedelta(days=60)
    ids, x = features(history, cut)
    y = labels(history, ids, cut)
    _, x_later = features(history, T0 + timedelta(days=88))
    for repeat, method in ((1, "sigmoid"), (8, "isotonic")):  # isotonic from 2,000 rows
        xs, ys = np.vstack([x] * repeat), np.concatenate([y] * repeat)
        model = ChurnModel().fit(xs, ys)
        folds = int(min(5, max(2, min(np.bincount(ys)))))
        base = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000))
        reference = CalibratedClassifierCV(base, method=method, cv=folds).fit(xs, ys)
        expected = reference.predict_proba(x_later)[:, 1]
        assert np.allclose(model.probabilities(x_later), expected, atol=1e-12), method
        loaded = ChurnModel.from_bytes(model.to_bytes())
        assert np.array_equal(loaded.probabilities(x_later), model.probabilities(x_later))
        assert loaded.risks(ids[:5], x[:5]) == model.risks(ids[:5], x[:5])
    with pytest.raises(ValueError, match="format"):
        ChurnModel.from_bytes(b'{"format": "churn-0"}')


def test_training_measures_a_time_based_hold_out() -> None:
    history = population(4, n=400)
    seen: list[float] = []
    model = train_churn(history, lambda fraction, _message: seen.append(fraction))
    assert seen == sorted(seen) and seen[-1] == 1.0
    m = model.metrics
    assert m["auc"] > 0.8 and m["auc"] >= m["auc_recency_only"] - 0.05
    assert m["brier"] < m["brier_base_rate"]
    assert sum(row["listeners"] for row in m["calibration"]) == m["holdout_listeners"]
    # The served model learned at the newest cut-off with known labels.
    newest = history.newest
    expected, _ = train_at(history, newest)
    ids, x = features(history, newest)
    assert np.allclose(model.probabilities(x), expected.probabilities(x))
    (scores,) = model.score([history])
    assert scores.as_of == newest and len(scores.ranked) == len(ids)
    ranked = [r.probability for r in scores.ranked]
    assert ranked == sorted(ranked, reverse=True)

    # Too short for the hold-out (under 56 days before the newest listen): noted, not faked.
    recent = history.at >= (newest - timedelta(days=50)).timestamp()
    columns = (history.listener, history.track, history.at, history.skipped, history.ms_played)
    short = ListenHistory(*(column[recent] for column in columns))
    noted = train_churn(short).metrics
    assert "auc" not in noted and noted["holdout"].startswith("not measured")


# --- Through the server --------------------------------------------------------------

CHURN_RISK = """query($id: ID!) { churnRisk(listenerId: $id) {
  listenerId probability asOf drivers { feature value contribution } } }"""
AT_RISK = """query($first: Int!) { atRiskListeners(first: $first) { listenerId probability } }"""


async def test_churn_queries_through_the_server(api: Api, storage: Storage) -> None:
    size = DemoSize(artists=5, tracks=30, listeners=80, listens=4_000, days=70)
    a = f"t-{uuid.uuid4().hex[:10]}"
    b = f"t-{uuid.uuid4().hex[:10]}"
    demo = await seed_demo(storage, a, name="A", size=size, seed=3)
    await seed_demo(storage, b, name="B", size=SMALL, seed=3)  # same listener IDs, too few
    viewer = token(a, Role.VIEWER)
    before = await api.post(AT_RISK, {"first": 10}, viewer)
    assert codes(before) == ["MODEL_NOT_READY"], before
    assert "trainModel(kind: CHURN)" in before["errors"][0]["message"]

    await train(api, token(a, Role.ANALYST), "CHURN")
    ranked = await api.post(AT_RISK, {"first": 10}, viewer)
    assert "errors" not in ranked, ranked
    risks = ranked["data"]["atRiskListeners"]
    assert len(risks) == 10
    assert [r["probability"] for r in risks] == sorted(
        (r["probability"] for r in risks), reverse=True
    )
    one = await api.post(CHURN_RISK, {"id": risks[0]["listenerId"]}, viewer)
    assert "errors" not in one, one
    assert one["data"]["churnRisk"]["probability"] == risks[0]["probability"]
    assert len(one["data"]["churnRisk"]["drivers"]) == 3
    assert {d["feature"] for d in one["data"]["churnRisk"]["drivers"]} <= set(FEATURES)
    newest = max(li.played_at for li in demo.listens)
    as_of = datetime.fromisoformat(one["data"]["churnRisk"]["asOf"])
    assert abs(as_of - newest) < timedelta(milliseconds=1)  # stored to the millisecond

    missing = await api.post(CHURN_RISK, {"id": "li-99999"}, viewer)
    assert codes(missing) == ["NOT_FOUND"]
    # B's history is too small to learn from: its training fails, saying so, and B never
    # gets A's model or scores for the listener IDs both tenants have.
    b_analyst = token(b, Role.ANALYST)
    failed = await finished(api, b_analyst, await start(api, b_analyst, "CHURN"))
    assert failed["status"] == "FAILED" and "not enough data" in failed["error"], failed
    b_viewer = token(b, Role.VIEWER)
    theirs = await api.post(CHURN_RISK, {"id": "li-00001"}, b_viewer)
    assert codes(theirs) == ["MODEL_NOT_READY"], theirs
    assert "failed to train" in theirs["errors"][0]["message"]
    assert codes(await api.post(AT_RISK, {"first": 3}, b_viewer)) == ["MODEL_NOT_READY"]
    assert codes(await api.post(AT_RISK, {"first": 0}, viewer)) == ["BAD_USER_INPUT"]
    assert codes(await api.post(AT_RISK, {"first": 5}, token(a, Role.INGEST))) == ["FORBIDDEN"]
