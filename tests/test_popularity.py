"""Track popularity: forecasts of the next 7 days, the rising score, the hold-out."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest

from tunelytics.domain.demo import DemoSize, generate_demo
from tunelytics.domain.predict import NotEnoughData
from tunelytics.domain.predict.popularity import (
    DailyPlays,
    PopularityModel,
    PopularityParameters,
    daily_matrix,
    evaluate_popularity,
    predict_popularity,
    ranks,
    rising_tracks,
    spearman,
    train_popularity,
)


def trending(seed: int, tracks: int = 600, days: int = 42) -> np.ndarray:
    """Poisson daily plays with a weekly season and a per-track weekly trend."""
    rng = np.random.default_rng(seed)
    base = rng.lognormal(0.0, 1.2, size=tracks)
    trend = rng.choice([0.0, 0.15, -0.15, 0.4], size=tracks, p=[0.6, 0.15, 0.15, 0.1])
    t = np.arange(days) / 7.0
    season = 1 + 0.3 * np.sin(2 * np.pi * np.arange(days) / 7)
    return rng.poisson(base[:, None] * np.exp(trend[:, None] * (t - t[-1])) * season) * 1.0


def test_a_growing_track_ranks_rising_above_a_flat_popular_one() -> None:
    rng = np.random.default_rng(3)
    popular = rng.poisson(60, size=28)  # flat, far more plays
    growing = rng.poisson(np.repeat([3, 6, 12, 24], 7))
    others = rng.poisson(5, size=(20, 28))
    p = predict_popularity(np.vstack([popular, growing, others]))
    ids = ["popular", "growing"] + [f"o{i}" for i in range(20)]
    assert p.growth[1] > p.growth[0]
    assert rising_tracks(p, ids)[0] == 1
    assert 0 not in rising_tracks(p, ids)
    # The growing track's forecast is above its last week; the flat one stays near 60 x 7.
    assert p.predicted_7d[1] > p.last_7d[1]
    assert abs(p.predicted_7d[0] - 420) < 60


def test_one_play_on_a_quiet_track_is_not_rising() -> None:
    rng = np.random.default_rng(4)
    catalogue = rng.poisson(4, size=(30, 28)).astype(float)
    once = np.zeros(28)
    once[-1] = 1  # its only play, yesterday
    twice = np.zeros(28)
    twice[-2:] = 1
    p = predict_popularity(np.vstack([catalogue, once, twice]))
    ids = [f"t{i}" for i in range(32)]
    assert p.growth[30] < 1.25 and p.growth[31] < 1.25
    assert 30 not in rising_tracks(p, ids) and 31 not in rising_tracks(p, ids)
    # The same relative jump with many plays is rising: shrinkage, not a cap on growth.
    loud = np.r_[np.zeros(21), np.full(7, 30.0)]
    p = predict_popularity(np.vstack([catalogue, loud]))
    assert 30 in rising_tracks(p, ids[:31])


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_model_beats_the_last_7_days_on_trending_tracks(seed: int) -> None:
    e = evaluate_popularity(trending(seed))
    assert e.tracks == 600
    assert e.mae < e.mae_naive
    assert e.spearman >= e.spearman_naive
    # The hold-out is honest: days from the cut on are never seen by the fit.
    counts = trending(seed)
    changed = counts.copy()
    changed[:, -7:] = 0
    assert predict_popularity(counts[:, :-7]).predicted_7d.tolist() == (
        predict_popularity(changed[:, :-7]).predicted_7d.tolist()
    )


def test_spearman_and_ranks_with_ties() -> None:
    assert ranks(np.array([10.0, 20.0, 10.0, 5.0])).tolist() == [2.5, 4.0, 2.5, 1.0]
    assert spearman(np.array([1.0, 2.0, 3.0]), np.array([30.0, 20.0, 10.0])) == pytest.approx(-1)
    assert np.isnan(spearman(np.ones(3), np.array([1.0, 2.0, 3.0])))


def test_daily_matrix_and_refusals() -> None:
    plays = {("a", date(2026, 1, 28)): 3, ("b", date(2026, 1, 1)): 2, ("a", date(2025, 1, 1)): 9}
    m = daily_matrix(plays, ["a", "b"], date(2026, 1, 28), 28)
    assert m[0, -1] == 3 and m[1, 0] == 2 and m.sum() == 5  # 2025 is outside the window
    with pytest.raises(NotEnoughData):
        predict_popularity(m[:, :20])
    with pytest.raises(NotEnoughData):
        evaluate_popularity(m)  # 21 days before the hold-out week


def as_daily(counts: np.ndarray, today: date) -> DailyPlays:
    """A tracks x days matrix as the plays a read returns, its last day yesterday."""
    days = counts.shape[1]
    return DailyPlays(
        {
            (f"t{i:03d}", today - timedelta(days=days - j)): int(n)
            for (i, j), n in np.ndenumerate(counts)
            if n
        },
        today,
    )


def test_training_tunes_on_earlier_weeks_and_measures_the_newest() -> None:
    counts = trending(5, tracks=300, days=84)
    today = date(2026, 3, 1)
    steps: list[float] = []
    model = train_popularity(as_daily(counts, today), lambda f, _m: steps.append(f))
    assert steps == sorted(steps) and steps[-1] == 1.0
    m = model.metrics
    assert m["validation_weeks"] == 6 and m["holdout_tracks"] == 300
    assert m["mae"] < m["mae_naive"]
    # The grid point chosen is the best on the validation weeks, never on the hold-out.
    cuts = [84 - 7 - 7 * k for k in range(1, 7)]

    def validation_mae(params: PopularityParameters) -> float:
        return float(np.mean([evaluate_popularity(counts, c, params).mae for c in cuts]))

    assert validation_mae(model.params) <= validation_mae(PopularityParameters()) + 1e-12
    held = evaluate_popularity(counts, 77, model.params)
    assert m["mae"] == pytest.approx(held.mae)
    # Stored as JSON and scored on fresh plays with the learned parameters.
    loaded = PopularityModel.from_bytes(model.to_bytes())
    assert loaded.params == model.params and loaded.metrics == model.metrics
    (scores,) = loaded.score([as_daily(counts, today)])
    expected = predict_popularity(counts[:, -28:], model.params)
    assert scores.by_track["t000"].predicted_7d == pytest.approx(expected.predicted_7d[0])
    assert [s.track_id for s in scores.rising] == [
        f"t{i:03d}" for i in rising_tracks(expected, [f"t{i:03d}" for i in range(300)])
    ]


def test_training_refuses_too_little_history_and_keeps_defaults_without_room() -> None:
    today = date(2026, 3, 1)
    with pytest.raises(NotEnoughData, match="35 days"):
        train_popularity(as_daily(trending(1, tracks=50, days=30), today))
    kept = train_popularity(as_daily(trending(1, tracks=50, days=36), today))
    assert kept.params == PopularityParameters() and kept.metrics["validation_weeks"] == 0
    assert "defaults kept" in kept.metrics["tuning"]


def test_the_demo_has_rising_tracks_the_trained_model_finds() -> None:
    """Issue 6: the demo tenant's risingTracks, at the size `serve` seeds, trained as the
    trainer does, holds the tracks the generator planted and few of the top tracks."""
    end = datetime(2026, 12, 4, tzinfo=UTC)
    demo = generate_demo(DemoSize(), end=end)
    planted = set(demo.rising_track_ids)
    assert 5 <= len(planted) <= 8
    daily = DailyPlays(
        Counter((li.track_id, li.played_at.date()) for li in demo.listens), end.date()
    )
    (scores,) = train_popularity(daily).score([daily])
    rising = [s.track_id for s in scores.rising]
    assert len(rising) >= 5
    assert len(planted & set(rising)) >= 4, (sorted(planted), rising[:10])
    assert len(set(rising) - planted) <= len(rising) // 2  # mostly the planted ones
    top = sorted(demo.tracks, key=lambda t: (-t.listen_count, t.id))[:50]
    assert sum(t.id in rising for t in top if t.id not in planted) <= 5
    # They were mid/low popularity before catching on: under the median of the top 50.
    before = Counter(li.track_id for li in demo.listens if li.played_at < end - timedelta(days=21))
    top_median = float(np.median([before[t.id] for t in top]))
    assert all(before[t] < top_median for t in planted)
    # Steady growth: each of the last three weeks has more of their plays than the one before.
    for track in planted:
        weeks = [
            sum(
                n
                for (t, day), n in daily.plays.items()
                if t == track
                and end.date() - timedelta(days=7 * (w + 1)) <= day
                and day < end.date() - timedelta(days=7 * w)
            )
            for w in (3, 2, 1, 0)
        ]
        assert weeks == sorted(weeks) and weeks[-1] > 2 * weeks[1], (track, weeks)


def test_the_rising_tracks_are_planted_per_seed_in_valid_listens() -> None:
    end = datetime(2026, 12, 4, tzinfo=UTC)
    size = DemoSize(artists=20, tracks=200, listeners=60, listens=6_000, days=42)
    demo = generate_demo(size, seed=3, end=end)
    again = generate_demo(size, seed=3, end=end)
    assert demo.rising_track_ids == again.rising_track_ids and demo.listens == again.listens
    assert generate_demo(size, seed=4, end=end).rising_track_ids != demo.rising_track_ids
    duration = {t.id: t.duration_ms for t in demo.tracks}
    signup = {li.id: li.signup_at for li in demo.listeners}
    times = [li.played_at for li in demo.listens]
    assert times == sorted(times) and demo.start <= times[0] and times[-1] < end
    for listen in demo.listens:
        assert 0 < listen.ms_played <= duration[listen.track_id]
        assert listen.played_at >= signup[listen.listener_id]
    # Small catalogues (the other tests' sizes) are left without planted tracks.
    small = generate_demo(DemoSize(artists=6, tracks=40, listeners=20, listens=2_000, days=56))
    assert small.rising_track_ids == []
