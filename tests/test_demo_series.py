"""The demo tenant's monitoring series: the planted CPU leak the forecast rule predicts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tunelytics.domain.monitoring.alerting.forecasting import forecast_for_rules
from tunelytics.domain.monitoring.alerting.rules import Rule
from tunelytics.domain.monitoring.demo_series import DEMO_RULES, demo_series

FORECAST_RULE = next(r for r in DEMO_RULES if r["kind"] == "forecast")
SATURATED = next(r for r in DEMO_RULES if r["name"] == "CPU saturated")


@pytest.mark.parametrize("days", [2, 3])  # the alert test's seeding and `serve`'s
@pytest.mark.parametrize("hour", [0, 4, 9, 15, 20, 23])  # the seeding's time of day
def test_the_demo_cpu_leak_is_predicted_on_web_1_only(days: int, hour: int) -> None:
    rule = Rule.from_input("t1", FORECAST_RULE)
    end = datetime(2026, 12, 4, hour, 17, tzinfo=UTC)
    crossing = {}
    for s in demo_series(int(end.timestamp() * 1000), days):
        if s.name != "cpu_percent":
            continue
        host = dict(s.labels)["host"]
        times = [datetime.fromtimestamp(t / 1000, UTC) for t in s.times_ms]
        forecast = forecast_for_rules([rule], s.name, s.name, dict(s.labels), times, s.values)
        assert forecast is not None
        found = rule.crossing(forecast)
        crossing[host] = found
        if host == "web-1":
            # Not saturated yet: the threshold rule has nothing to fire on in the leak.
            leak = [v for t, v in zip(times, s.values, strict=True) if t > end - timedelta(hours=4)]
            assert max(leak) < SATURATED["threshold"] < max(forecast.bounds[0.8][1])
            # Climbing: over 80% now, ~11 points an hour (12 five-minute steps).
            assert leak[-1] > 80 and leak[-1] > leak[-13] + 5
    assert crossing["web-1"] is not None and crossing["web-2"] is None
    assert crossing["web-1"].at <= end + timedelta(hours=1)
