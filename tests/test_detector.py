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


def test_state_is_json_and_resumes_exactly() -> None:
    series = seasonal(900, seed=5)
    first = SeriesDetector()
    head = scores(series[:600], first)
    saved = json.loads(json.dumps(first.state()))
    resumed = SeriesDetector.from_state(saved)
    assert head + scores(series[600:], resumed) == scores(series)
