"""The streaming detector on plain data: causal, robust to hostile series, resumable."""

from __future__ import annotations

import json
import math

import numpy as np

from tunelytics.domain.monitoring.detector import SeriesDetector
from tunelytics.domain.monitoring.window import SortedWindow


def scores(values: list[float], detector: SeriesDetector | None = None) -> list[float]:
    detector = detector or SeriesDetector()
    return [detector.score_one(v) for v in values]


def seasonal(n: int, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return list(10 + 3 * np.sin(2 * np.pi * t / 48) + rng.normal(0, 0.3, n))


def test_sorted_window_matches_numpy() -> None:
    rng = np.random.default_rng(1)
    window = SortedWindow(50)
    values = list(rng.normal(size=300))
    for i, value in enumerate(values):
        window.add(value)
        recent = values[max(0, i - 49) : i + 1]
        assert window.median() == float(np.median(recent))
    assert SortedWindow.from_state(window.state()).sorted == window.sorted


def test_spike_and_level_shift_stand_out() -> None:
    base = seasonal(1200)
    spiked = [*base[:1000], 40.0, *base[1001:]]
    shifted = [*base[:1000], *(v + 6 for v in base[1000:])]
    for series in (spiked, shifted):
        result = scores(series)
        assert max(result[1000:1010]) > 0.99
        assert max(result[1000:1010]) > max(result[400:990])


def test_causal_scores_do_not_depend_on_later_points() -> None:
    series = seasonal(800, seed=3)
    full = scores(series)
    assert scores(series[:500]) == full[:500]


def test_hostile_series_never_crash_and_stay_in_range() -> None:
    cases = [
        [5.0] * 500,  # constant
        [1.0],  # a single point
        [0.0, 1e308, -1e308, 0.0, 1e-308] * 50,  # huge values
        [1.0, math.nan, math.inf, -math.inf, 2.0] * 40,  # non-finite
        [*([1.0] * 300), *([1000.0] * 300)],  # a step after a flat line
    ]
    for series in cases:
        result = scores(series)
        assert len(result) == len(series)
        assert all(0.0 <= s <= 1.0 and math.isfinite(s) for s in result)


def timed_scores(values: list[float], detector: SeriesDetector, start: int = 0) -> list[float]:
    """Hourly points from `start` (an index into the hourly clock)."""
    return [detector.score_one(v, 3600.0 * (start + i)) for i, v in enumerate(values)]


def daily(days: int, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    t = np.arange(24 * days)
    return list(10 + 4 * np.sin(2 * np.pi * t / 24) + rng.normal(0, 0.2, len(t)))


def test_a_changed_daily_rhythm_is_found_only_with_time() -> None:
    """On day 12 the afternoon runs at the morning's level: every value is in the normal
    range, only its time of day is wrong."""
    series = daily(14, seed=2)
    changed = list(series)
    for hour in range(12 * 24 + 4, 12 * 24 + 10):
        changed[hour] = series[hour - 12]  # half a day out of phase
    timed = timed_scores(changed, SeriesDetector())
    untimed = scores(changed)
    window = slice(12 * 24 + 4, 12 * 24 + 10)
    assert max(timed[window]) > 0.99
    assert max(timed[window]) > max(timed[5 * 24 : 12 * 24])
    assert max(untimed[window]) < max(timed[window])


def test_state_is_json_and_resumes_exactly() -> None:
    series = daily(10, seed=5)
    first = SeriesDetector()
    head = timed_scores(series[:150], first)
    saved = json.loads(json.dumps(first.state()))
    resumed = SeriesDetector.from_state(saved)
    rest = timed_scores(series[150:], resumed, start=150)
    assert first.period == 24
    assert head + rest == timed_scores(series, SeriesDetector())
