"""The streaming detector on plain data: causal, robust to hostile series, resumable, and
finding level shifts, spikes, drifts and changed rhythm near their onset."""

from __future__ import annotations

import doctest
import json
import math

import numpy as np
import pytest

from tunelytics.domain.monitoring import context, detector, kernels, robust, volatility, window
from tunelytics.domain.monitoring.context import ContextConfig, ContextNovelty
from tunelytics.domain.monitoring.detector import SeriesDetector
from tunelytics.domain.monitoring.robust import RobustConfig, RobustViews
from tunelytics.domain.monitoring.volatility import Volatility
from tunelytics.domain.monitoring.window import SortedWindow

HOUR = 3600.0


def scores(values: list[float], detector: SeriesDetector | None = None) -> list[float]:
    detector = detector or SeriesDetector()
    return [detector.score_one(v) for v in values]


def timed_scores(values: list[float], detector: SeriesDetector, start: int = 0) -> list[float]:
    """Hourly points from `start` (an index into the hourly clock)."""
    return [detector.score_one(v, HOUR * (start + i)) for i, v in enumerate(values)]


def daily(days: int, seed: int = 0, noise: float = 0.2) -> list[float]:
    rng = np.random.default_rng(seed)
    t = np.arange(24 * days)
    return list(10 + 4 * np.sin(2 * np.pi * t / 24) + rng.normal(0, noise, len(t)))


def seasonal(n: int, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return list(10 + 3 * np.sin(2 * np.pi * t / 48) + rng.normal(0, 0.3, n))


@pytest.mark.parametrize("module", [window, context, robust, volatility, detector])
def test_docstring_examples_run(module: object) -> None:
    result = doctest.testmod(module)  # type: ignore[arg-type]
    assert result.attempted > 0
    assert result.failed == 0


def test_sorted_window_matches_numpy() -> None:
    rng = np.random.default_rng(1)
    window = SortedWindow(50)
    values = list(rng.normal(size=300))
    for i, value in enumerate(values):
        window.add(value)
        recent = values[max(0, i - 49) : i + 1]
        assert window.median() == float(np.median(recent))
    assert SortedWindow.from_state(window.state()).sorted == window.sorted


WINDOW_CASES = {
    "ties and signed zeros": lambda rng, n: np.round(0.4 * rng.normal(size=n)),
    "heavy tail": lambda rng, n: np.abs(rng.standard_t(1.5, size=n)),
    "infinities": lambda rng, n: np.where(rng.random(n) < 0.05, np.inf, rng.random(n)),
    "negative": lambda rng, n: -np.abs(rng.normal(size=n)),
}


@pytest.mark.parametrize("case", WINDOW_CASES)
@pytest.mark.parametrize(("size", "held", "warmup"), [(50, 0, 1), (50, 20, 30), (300, 300, 30)])
def test_compiled_window_steps_equal_the_sorted_window(
    case: str, size: int, held: int, warmup: int
) -> None:
    """The batched ranks (a Fenwick tree) and quartiles (followed order statistics) give
    `tail_rank` and the sorted list's quartiles, one view at a time, records included; the
    window ends as `add` leaves it."""
    rng = np.random.default_rng(18)
    start, views = WINDOW_CASES[case](rng, held), WINDOW_CASES[case](rng, 700)
    for quantile in (None, 0.98):
        one, many = SortedWindow(size), SortedWindow(size)
        for value in start.tolist():
            one.add(value)
            many.add(value)
        expected = []
        for view in views.tolist():
            expected.append(context.tail_rank(view, one, quantile) if len(one) >= warmup else -1.0)
            one.add(view)
        assert context.tail_rank_many(views, many, warmup, quantile).tolist() == expected
        assert many.state() == one.state() and many.sorted == one.sorted
    one, many = SortedWindow(size), SortedWindow(size)
    for value in start.tolist():
        one.add(value)
        many.add(value)
    counts = np.sort(rng.integers(0 if held else 1, len(views) + 1, size=300))
    after: dict[int, tuple[float, float, float]] = {}
    for done in range(len(views) + 1):
        s, n = one.sorted, len(one.sorted)
        if n:
            after[done] = (one.median(), s[n // 4], s[(3 * n) // 4])
        if done < len(views):
            one.add(float(views[done]))
    median, low, high = many.quartiles_many(views, counts)
    assert list(zip(median.tolist(), low.tolist(), high.tolist(), strict=True)) == [
        after[k] for k in counts.tolist()
    ]
    assert many.state() == one.state()


def test_the_compiled_kernels_warm_up_ahead_of_use() -> None:
    """The server warms them in a thread at start (a first compile takes seconds): with the
    argument types scoring uses, so no batch compiles anything on the event loop."""
    assert kernels.warm_up() >= 0.0
    compiled = [kernels.tail_ranks, kernels.quartiles, kernels.nearest, kernels.discounted]
    compiled.append(kernels.alarm_once)
    signatures = [f.signatures for f in compiled]
    assert all(len(s) == 1 for s in signatures)
    series = np.array(daily(70, seed=19))[::2]  # a strided view, as a caller may pass one
    restored = SeriesDetector.from_state(json.loads(json.dumps(SeriesDetector().state())))
    for d in (SeriesDetector(), restored):
        d.score_many(series, HOUR * np.arange(len(series)))
        d.score_many(series[:40])
    assert [f.signatures for f in compiled] == signatures


def onset_and_clean(result: list[float], onset: int, within: int) -> tuple[float, float]:
    """The strongest score from the onset on, and the strongest on the clean stretch
    before it (after the first 600 points, which teach the detector the series)."""
    return max(result[onset : onset + within]), max(result[600:onset])


@pytest.mark.parametrize(
    ("change", "within"),
    [
        ("spike", 3),
        ("level shift", 10),
        ("drift", 120),
        ("variance", 30),
    ],
)
def test_a_change_scores_high_near_its_onset_and_low_before(change: str, within: int) -> None:
    base = np.array(seasonal(1600, seed=7))
    onset = 1300
    after = np.arange(len(base) - onset)
    series = base.copy()
    if change == "spike":
        series[onset] += 12.0
    elif change == "level shift":
        series[onset:] += 4.0
    elif change == "drift":
        series[onset:] += 0.03 * after  # 0.1 noise sd per point: invisible at first
    else:
        series[onset:] += np.random.default_rng(9).normal(0, 2.0, len(after))
    found, clean = onset_and_clean(scores(list(series)), onset, within)
    assert found > 0.99
    assert found > clean


def test_a_changed_daily_rhythm_is_found() -> None:
    """On day 60 the afternoon runs at the morning's level: every value is in the normal
    range, only its time of day is wrong."""
    series = daily(64, seed=2)
    changed = list(series)
    start = 60 * 24 + 4
    for hour in range(start, start + 6):
        changed[hour] = series[hour - 12]  # half a day out of phase
    result = timed_scores(changed, SeriesDetector())
    assert max(result[start : start + 8]) > 0.99
    assert max(result[start : start + 8]) > max(result[30 * 24 : start])


def test_the_robust_views_learn_the_daily_period_from_timestamps() -> None:
    views = RobustViews()
    for i, value in enumerate(daily(3)):
        views.score_one(value, HOUR * i)
    assert views.period == 24
    untimed = RobustViews()
    for value in daily(3):
        untimed.score_one(value)
    assert untimed.period == 0


def test_the_weekly_view_finds_a_saturday_that_behaves_like_a_weekday() -> None:
    """The daily view is blind to it: most of the previous seven days are weekdays."""
    rng = np.random.default_rng(11)
    hours = np.arange(24 * 7 * 8)
    weekend = (hours // 24) % 7 >= 5
    daily_shape = np.sin(2 * np.pi * hours / 24)
    series = np.where(weekend, 5 + daily_shape, 10 + 4 * daily_shape)
    series = series + rng.normal(0, 0.2, len(hours))
    saturday = 24 * (7 * 6 + 5)
    series[saturday : saturday + 24] = 10 + 4 * daily_shape[saturday : saturday + 24]

    def run(views: RobustViews) -> list[float]:
        return [views.score_one(float(v), HOUR * i) for i, v in enumerate(series)]

    with_weeks = run(RobustViews())
    without_weeks = run(RobustViews(RobustConfig(max_past=0)))
    found = max(with_weeks[saturday : saturday + 24])
    assert found > 0.99
    assert found > max(with_weeks[24 * 7 * 4 : saturday])
    assert found > max(without_weeks[saturday : saturday + 24])


def test_context_novelty_finds_a_shape_never_seen() -> None:
    d = ContextNovelty(ContextConfig(length=8, memory=300))
    calm = [d.score_one(math.sin(i / 4)) for i in range(1000)]
    flat = [d.score_one(0.5) for _ in range(12)]  # in range, but flat for the first time
    assert max(flat) > 0.99 > max(calm[600:])


def test_volatility_finds_a_calm_series_that_starts_to_oscillate_within_its_range() -> None:
    rng = np.random.default_rng(11)
    calm = [20.0 + rng.normal(0, 0.05) for _ in range(1200)]
    calm[300::150] = [24.0] * len(calm[300::150])  # lone spikes: steps as large as the swings
    d = Volatility()
    before = [d.score_one(v) for v in calm]
    swings = [d.score_one(20.0 + 3.0 * (-1) ** i) for i in range(60)]  # inside the range seen
    assert max(swings) > 0.99 > max(before[600:])
    assert json.loads(json.dumps(d.state())) == Volatility.from_state(d.state()).state()


def test_causal_scores_do_not_depend_on_later_points() -> None:
    series = daily(60, seed=3)
    full = timed_scores(series, SeriesDetector())
    assert timed_scores(series[:900], SeriesDetector()) == full[:900]


def test_score_many_equals_score_one() -> None:
    series = np.array(daily(60, seed=4))
    series[1000] = 40.0
    at = HOUR * np.arange(len(series))
    one = SeriesDetector()
    expected = [one.score_one(float(v), float(t)) for v, t in zip(series, at, strict=True)]
    many = SeriesDetector()
    got = np.concatenate(
        [many.score_many(series[:333], at[:333]), many.score_many(series[333:], at[333:])]
    )
    assert got.tolist() == expected
    assert json.dumps(many.state()) == json.dumps(one.state())
    untimed = SeriesDetector().score_many(series)
    assert untimed.tolist() == scores(list(series))


BATCHED = {
    "daily, timed": (daily(70, seed=12), True),
    "integers with ties": (list(np.round(np.random.default_rng(13).normal(0, 1, 3000))), True),
    "constant then a step": ([*([3.0] * 1200), *([7.0] * 900)], True),
    "random walk, untimed": (list(np.cumsum(np.random.default_rng(14).normal(size=2500))), False),
    "huge values": ([0.0, 1e308, -1e308, 0.0, 1e-308] * 300, True),
    "tiny values": (list(1e-300 * np.random.default_rng(15).normal(size=1500)), True),
    # Ties between 0.0 and -0.0: one place in a bisection, one index in the compiled ranks.
    "signed zeros": (list(np.round(0.3 * np.random.default_rng(17).normal(size=2500))), True),
}


@pytest.mark.parametrize("name", BATCHED)
@pytest.mark.parametrize("batch", [1, 16, 97, 1000, 10_000])
def test_score_many_equals_score_one_on_any_series_and_batch_size(name: str, batch: int) -> None:
    """`score_many` scores a batch vectorised (one nearest-neighbour search along the lags
    for all its points, the windows' statistics at once): bit for bit the scores and the
    state of point-by-point scoring, whatever the batch boundaries; non-finite values
    inside a batch are skipped as `score_one` skips them."""
    values, timed = BATCHED[name]
    series = np.array(values, dtype=float)
    series[::211] = np.nan
    at = HOUR * np.arange(len(series)) if timed else None
    one = SeriesDetector()
    expected = [
        one.score_one(float(v), None if at is None else float(at[i])) for i, v in enumerate(series)
    ]
    many = SeriesDetector()
    got = [
        many.score_many(series[i : i + batch], None if at is None else at[i : i + batch])
        for i in range(0, len(series), batch)
    ]
    assert np.concatenate(got).tolist() == expected
    assert json.dumps(many.state()) == json.dumps(one.state())


@pytest.mark.parametrize("length", [2, 8, 12, 13, 16])
def test_context_novelty_batches_equal_single_points_for_any_context_length(length: int) -> None:
    """The batched search sums the context by doubling, then exactly for the nearest few:
    also where the length is no power of two."""
    series = np.sin(np.arange(2500) / 7) + np.random.default_rng(16).normal(0, 0.1, 2500)
    config = ContextConfig(length=length, memory=300)
    one, many = ContextNovelty(config), ContextNovelty(config)
    assert many.score_many(series).tolist() == [one.score_one(float(v)) for v in series]
    assert json.dumps(many.state()) == json.dumps(one.state())


def test_state_is_json_and_resumes_exactly() -> None:
    """Resumed past the point where the context memory wraps around."""
    series = daily(60, seed=5)
    first = SeriesDetector()
    head = timed_scores(series[:1300], first)
    saved = json.loads(json.dumps(first.state()))
    assert saved["version"] == detector.STATE_VERSION
    resumed = SeriesDetector.from_state(saved)
    rest = timed_scores(series[1300:], resumed, start=1300)
    assert head + rest == timed_scores(series, SeriesDetector())


def test_a_state_of_another_version_starts_afresh() -> None:
    d = SeriesDetector.from_state({"version": 1, "levels": {}})
    assert d.seen == 0
    assert 0.0 <= d.score_one(1.0) <= 1.0


HOSTILE = {
    "constant": [5.0] * 1500,
    "a single point": [1.0],
    "huge values": [0.0, 1e308, -1e308, 0.0, 1e-308] * 300,
    "a step after a flat line": [*([1.0] * 700), *([1000.0] * 700)],
    "alternating extremes": [(-1.0) ** i * 1e300 for i in range(1400)],
}


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_series_never_crash_and_stay_in_range(name: str) -> None:
    series = HOSTILE[name]
    d = SeriesDetector()
    result = timed_scores(series, d)
    assert len(result) == len(series)
    assert all(0.0 <= s <= 1.0 and math.isfinite(s) for s in result)
    json.dumps(d.state())  # still serialisable


def test_gaps_in_time_do_not_break_the_detector() -> None:
    series = daily(20, seed=6)
    d = SeriesDetector()
    at = [HOUR * i + (86_400.0 * 30 if i > 200 else 0.0) for i in range(len(series))]
    result = [d.score_one(v, t) for v, t in zip(series, at, strict=True)]
    assert all(0.0 <= s <= 1.0 for s in result)


def test_non_finite_values_are_ignored_and_do_not_corrupt_the_state() -> None:
    series = daily(50, seed=8)
    clean = timed_scores(series, SeriesDetector())
    d = SeriesDetector()
    dirty: list[float] = []
    for i, value in enumerate(series):
        if i % 97 == 5:
            for bad in (math.nan, math.inf, -math.inf):
                assert d.score_one(bad, HOUR * i) == 0.0
        dirty.append(d.score_one(value, HOUR * i))
    assert dirty == clean


def test_surprise_and_its_inverse_keep_the_rank_scale() -> None:
    """0.99 (a record of the history) is ln(800) nats; the two maps invert each other and
    keep order, so evidence can be discounted without reordering scores."""
    assert math.isclose(context.surprise(0.99), math.log(context.REFERENCE))
    ranks = [0.0, 0.3, 0.9, 0.98, 0.99, 0.995, 0.9999]
    nats = [context.surprise(r) for r in ranks]
    assert nats == sorted(nats)
    for r, e in zip(ranks, nats, strict=True):
        assert math.isclose(context.from_surprise(e), r, abs_tol=1e-12)
    assert context.from_surprise(-5.0) == 0.0
    assert context.from_surprise(math.inf) == 1.0


def test_the_compiled_discount_equals_the_reference_to_the_bit() -> None:
    """`discounted_many` (compiled, the C library's log and exp) against `surprise` and
    `from_surprise` with Python's `math`, records and the rank scale's ends included."""
    rng = np.random.default_rng(20)
    ranks = np.concatenate([rng.random(50_000), rng.uniform(0.985, 1.0, 50_000)])
    ranks = np.concatenate([ranks, [0.0, 0.99, 1.0, np.nextafter(0.99, 0.0)]])
    assert kernels.REFERENCE == context.REFERENCE
    for nats in (math.log(2), math.log(5), 0.0):
        expected = [context.from_surprise(context.surprise(r) - nats) for r in ranks.tolist()]
        assert context.discounted_many(ranks, nats).tolist() == expected


def test_a_record_counts_less_in_a_heavy_tailed_history() -> None:
    light, heavy = SortedWindow(100), SortedWindow(100)
    for i in range(100):
        light.add(1.0 + i / 1000)  # record 1.099, tight below it
        heavy.add(1.0 + i / 1000 if i < 97 else 1.099 - (99 - i) * 0.3)  # record far above
    assert context.tail_rank(1.2, light, 0.98) > context.tail_rank(1.2, heavy, 0.98) > 0.99


def test_the_strongest_robust_view_is_discounted_for_the_chances_it_had() -> None:
    """A bare record of one view (rank 0.99) is no record of the ensemble: with five views
    one of them breaks its record five times as often as a single one would."""
    discounted = context.from_surprise(context.surprise(0.99) - math.log(robust.VIEWS))
    assert 0.9 < discounted < 0.99


def test_a_value_far_outside_the_range_seen_is_a_record_from_the_start() -> None:
    views = RobustViews()
    early = [views.score_one(float(x % 5)) for x in range(20)]  # no calibrated view yet
    assert max(early[:5]) > 0.99  # each of 0..4 widens a range that is still small
    assert max(early[5:]) == 0.0
    assert views.score_one(4.3) == 0.0  # inside the range and its 10 % margin
    assert views.score_one(50.0) > 0.99
    resumed = RobustViews.from_state(json.loads(json.dumps(views.state())))
    assert (resumed.low, resumed.high) == (0.0, 50.0)


def test_after_an_alarm_even_stronger_evidence_stays_quiet_for_a_while() -> None:
    d = SeriesDetector()
    calm = [d.score_one(math.sin(i / 5), 60.0 * i) for i in range(1500)]
    assert max(calm[1200:]) < d.config.alarm_level
    alarm = d.score_one(5.0, 90_000.0)
    assert alarm >= d.config.alarm_level
    louder = d.score_one(50.0, 90_060.0)  # far beyond the first: still the same incident
    assert louder < d.config.alarm_level
    for k in range(2, d.config.alarm_quiet + 1):
        d.score_one(math.sin(k / 5), 90_000.0 + 60.0 * k)
    assert d.score_one(500.0, 99_000.0) >= d.config.alarm_level  # the quiet is over


def test_a_version_4_state_resumes_with_no_alarm_pending() -> None:
    series = daily(30, seed=9)
    first = SeriesDetector()
    timed_scores(series[:400], first)
    old = json.loads(json.dumps(first.state()))
    old["version"] = 4
    del old["last_loud"], old["volatility"]
    resumed = SeriesDetector.from_state(old)
    assert resumed.seen == 400 and resumed.last_loud < 0
    first.volatility = Volatility()  # what a version 4 state did not have starts afresh
    assert timed_scores(series[400:], resumed, start=400) == timed_scores(
        series[400:], first, start=400
    )


@pytest.mark.parametrize("version", [5, 6])
def test_a_version_5_or_6_state_resumes_with_a_fresh_volatility_detector(version: int) -> None:
    series = daily(30, seed=10)
    first = SeriesDetector()
    timed_scores(series[:400], first)
    old = json.loads(json.dumps(first.state()))
    old["version"] = version
    if version == 5:
        del old["volatility"]
    else:  # version 6 had one span: one window of views
        old["volatility"]["views"] = old["volatility"]["views"][0]
    resumed = SeriesDetector.from_state(old)
    assert resumed.seen == 400 and resumed.volatility.state() == Volatility().state()
    first.volatility = Volatility()
    assert timed_scores(series[400:], resumed, start=400) == timed_scores(
        series[400:], first, start=400
    )


def test_a_spike_early_in_plain_noise_stands_out() -> None:
    """A few hundred points of noise: no record of a young history alarms before the spike
    (the alarm quiet would hide it)."""
    rng = np.random.default_rng(3)
    values = list(100 + rng.normal(0, 1, 400))
    values[350] = 160.0
    d = SeriesDetector()
    got = [d.score_one(v, 60.0 * i) for i, v in enumerate(values)]
    assert got[350] == max(got[300:]) >= d.config.alarm_level
