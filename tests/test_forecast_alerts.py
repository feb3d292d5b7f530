"""Forecast (predictive) alert rules on plain data: validation, the crossing, the lifecycle
(fired with the predicted crossing in annotations, resolved when the forecast no longer
crosses), silences and inhibition, tenancy."""

from __future__ import annotations

import doctest
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from tunelytics.domain.monitoring.alerting import (
    Alert,
    AlertEngine,
    AlertState,
    Incident,
    Rule,
    RuleValidationError,
    SeriesForecast,
    SeriesSample,
    Silence,
)
from tunelytics.domain.monitoring.alerting import forecasting as forecasting_module
from tunelytics.domain.monitoring.alerting.forecasting import forecast_for_rules

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
STEP = timedelta(minutes=5)


def forecast_rule(tenant: str = "t1", **data: Any) -> Rule:
    base = {
        "name": "disk full soon",
        "kind": "forecast",
        "selector": 'disk_used_pct{service="db"}',
        "op": ">",
        "threshold": 90.0,
        "horizon": "2h",
        "severity": "warning",
    }
    return Rule.from_input(tenant, {**base, **data})


def history(slope_per_step: float, n: int = 288, start: float = 50.0, seed: int = 1) -> Any:
    rng = np.random.default_rng(seed)
    times = [T0 + STEP * i for i in range(n)]
    values = start + slope_per_step * np.arange(n) + rng.normal(0, 0.3, n)
    return times, values.tolist()


def made(rules: list[Rule], slope: float, series_id: str = "s1", **kw: Any) -> SeriesForecast:
    times, values = history(slope, **kw)
    f = forecast_for_rules(rules, series_id, "disk_used_pct", {"service": "db"}, times, values)
    assert f is not None
    return f


def flat(value: float, origin: datetime = T0, series_id: str = "s1") -> SeriesForecast:
    """A hand-made forecast: `value` for the next 24 steps, +-1 bounds."""
    times = [origin + STEP * (i + 1) for i in range(24)]
    mean = [value] * 24
    return SeriesForecast(
        series_id,
        "disk_used_pct",
        {"service": "db"},
        origin,
        times,
        mean,
        {0.8: ([value - 1] * 24, [value + 1] * 24)},
        "naive",
    )


def test_docstring_examples_run() -> None:
    assert doctest.testmod(forecasting_module).failed == 0


def test_forecast_rule_input_is_validated() -> None:
    with pytest.raises(RuleValidationError) as caught:
        Rule.from_input(
            "t1",
            {
                "name": "x",
                "kind": "forecast",
                "selector": "m",
                "op": "==",
                "horizon": "0s",
                "forecast_level": 0.3,
                "forecast_on": "median",
                "every": "1s",
                "escalate_at": 5,
                "escalate_to": "critical",
            },
        )
    fields = {e.field for e in caught.value.errors}
    assert {"threshold", "op", "horizon", "forecast_level", "forecast_on", "every"} <= fields
    assert "escalate_at" in fields
    with pytest.raises(RuleValidationError, match="history"):
        forecast_rule(horizon="1d", history="2d")
    rule = forecast_rule(forecast_on="mean", every="30s", resolve_points=3)
    assert (rule.forecast_on, rule.every, rule.resolve_points) == ("mean", timedelta(0, 30), 3)
    again = Rule.from_document(rule.to_document())
    assert again == rule


def test_an_artist_or_track_series_rule_must_say_which() -> None:
    """A rule on one artist's (track's) streams without `artist=` (`track=`) would never
    fire: it is refused, naming the selector."""
    for selector in (
        "tunelytics_artist_streams_per_hour",
        'tunelytics_artist_streams_per_hour{artist=~"ar-.*"}',
        'tunelytics_track_streams_per_hour{artist="ar-1"}',
    ):
        with pytest.raises(RuleValidationError) as caught:
            forecast_rule(selector=selector)
        assert [e.field for e in caught.value.errors] == ["selector"], selector
    assert forecast_rule(selector='tunelytics_track_streams_per_hour{track="tr-1"}')
    assert forecast_rule(selector="tunelytics_streams_per_hour")


def test_a_rising_series_raises_a_predictive_alert_with_the_crossing_in_annotations() -> None:
    rule = forecast_rule()
    engine = AlertEngine([rule])
    # 50 -> ~87 over 24 h (0.13 per 5 min): in 2 h the point forecast reaches ~89.5,
    # the upper bound of its 80% interval ~90.8.
    rising = made([rule], 0.13)
    crossing = rule.crossing(rising)
    assert crossing is not None and crossing.value > 90.0 >= crossing.mean
    ev = engine.check_forecasts([rising], [], [], now=T0)
    assert [(e.kind.value, e.notify) for e in ev.events] == [("fired", True)]
    alert = ev.changed_alerts[0]
    assert alert.state is AlertState.FIRING and alert.kind.value == "forecast"
    notes = alert.annotations
    assert notes["forecast_crossing_at"] == crossing.at.isoformat()
    assert float(notes["forecast_value"]) == pytest.approx(crossing.value, rel=1e-5)
    assert notes["forecast_on"] == "upper bound of the 80% interval"
    assert notes["threshold"] == "> 90" and notes["forecast_model"]
    assert alert.started_at == rising.origin  # event time: the forecast's origin
    # The same alert (fingerprint) on the next evaluation: no second FIRED.
    ev = engine.check_forecasts([rising], [alert], ev.changed_incidents, now=T0)
    assert ev.events == []
    # On the point forecast the same history does not cross yet.
    on_mean = forecast_rule(name="disk full soon (mean)", forecast_on="mean")
    assert on_mean.crossing(rising) is None
    assert AlertEngine([on_mean]).check_forecasts([rising], [], [], now=T0).events == []


def test_a_flat_series_does_not_alert_and_a_falling_rule_reads_the_lower_bound() -> None:
    rule = forecast_rule()
    steady = made([rule], 0.0)
    assert AlertEngine([rule]).check_forecasts([steady], [], [], now=T0).events == []
    below = forecast_rule(name="disk nearly empty", op="<", threshold=45.0)
    falling = made([below], -0.05)  # 50 -> ~35.6 over the day
    crossing = below.crossing(falling)
    assert crossing is not None and crossing.value < 45.0
    step = list(falling.timestamps).index(crossing.at)
    assert crossing.value == falling.bounds[0.8][0][step]  # the lower bound
    ev = AlertEngine([below]).check_forecasts([falling], [], [], now=T0)
    assert [e.kind.value for e in ev.events] == ["fired"]
    assert ev.events[0].alert.annotations["forecast_on"] == "lower bound of the 80% interval"


def test_the_alert_resolves_when_the_forecast_no_longer_crosses() -> None:
    rule = forecast_rule()
    engine = AlertEngine([rule])
    ev = engine.check_forecasts([flat(95.0)], [], [], now=T0)
    alert, incident = ev.changed_alerts[0], ev.changed_incidents[0]
    assert alert.strength == pytest.approx(1 - 5 / 120)  # one step of a 2-hour horizon
    later = T0 + timedelta(minutes=10)
    ev = engine.check_forecasts([flat(80.0, later)], [alert], [incident], now=later)
    assert [e.kind.value for e in ev.events] == ["resolved"]
    assert alert.state is AlertState.RESOLVED and alert.resolved_at == later


def test_only_the_horizon_counts() -> None:
    rule = forecast_rule(horizon="30m")
    f = flat(80.0)
    beyond = SeriesForecast(
        f.series_id,
        f.name,
        f.labels,
        f.origin,
        f.timestamps,
        [80.0] * 6 + [95.0] * 18,  # crosses after 35 minutes
        {},
        "x",
    )
    assert forecast_rule(horizon="30m", forecast_on="mean").crossing(beyond) is None
    assert forecast_rule(horizon="35m", forecast_on="mean").crossing(beyond) is not None
    # A forecast without the rule's level says nothing (no alert, no resolution).
    assert AlertEngine([rule]).check_forecasts([beyond], [], [], now=T0).events == []


def test_silences_and_inhibition_apply_to_predictive_alerts() -> None:
    rule = forecast_rule()
    silence = Silence.from_input(
        "t1",
        {
            "matchers": 'alertname="disk full soon"',
            "starts_at": T0 - timedelta(hours=1),
            "ends_at": T0 + timedelta(hours=1),
            "created_by": "op",
            "comment": "disk migration",
        },
    )
    ev = AlertEngine([rule], [silence]).check_forecasts([flat(95.0)], [], [], now=T0)
    assert [(e.kind.value, e.notify) for e in ev.events] == [("fired", False)]
    assert ev.changed_alerts[0].silenced_by == [silence.id]
    # A critical threshold alert on the same service mutes the warning forecast alert.
    critical = Rule.from_input(
        "t1",
        {
            "name": "db down",
            "kind": "threshold",
            "selector": 'db_up{service="db"}',
            "op": "<",
            "threshold": 1,
            "severity": "critical",
        },
    )
    engine = AlertEngine([rule, critical])
    down = SeriesSample("s2", "db_up", {"service": "db"}, T0, 0.0)
    first = engine.evaluate([down], [], [], now=T0)
    open_alerts: list[Alert] = list(first.changed_alerts)
    incidents: list[Incident] = list(first.changed_incidents)
    ev = engine.check_forecasts([flat(95.0)], open_alerts, incidents, now=T0)
    # It joins the db incident (which widens to 2 series: escalated), both muted.
    assert [(e.kind.value, e.notify) for e in ev.events] == [
        ("fired", False),
        ("escalated", False),
    ]
    assert ev.events[0].alert.inhibited
    assert ev.events[0].alert.incident_id == open_alerts[0].incident_id


def test_tenants_never_meet() -> None:
    """An engine of tenant B ignores tenant A's open alerts, and tenant A's alert for
    the same series id and rule name is a different alert from B's."""
    rule_a, rule_b = forecast_rule("tA"), forecast_rule("tB")
    a = AlertEngine([rule_a]).check_forecasts([flat(95.0)], [], [], now=T0)
    alert_a = a.changed_alerts[0]
    assert alert_a.tenant_id == "tA"
    engine_b = AlertEngine([rule_b], tenant_id="tB")
    # B's engine given A's alert (a caller mistake): it is not B's, so B fires its own.
    b = engine_b.check_forecasts([flat(95.0)], [alert_a], a.changed_incidents, now=T0)
    assert [e.kind.value for e in b.events] == ["fired"]
    alert_b = b.changed_alerts[0]
    assert alert_b.tenant_id == "tB" and alert_b.id != alert_a.id
    assert alert_a.state is AlertState.FIRING and alert_a.annotations  # untouched
    # and a not-crossing forecast in B never resolves A's alert
    engine_b.check_forecasts([flat(10.0)], [alert_a], a.changed_incidents, now=T0)
    assert alert_a.state is AlertState.FIRING
    with pytest.raises(ValueError):
        AlertEngine([rule_a, rule_b])


def test_too_short_or_too_gappy_history_gives_no_forecast() -> None:
    rule = forecast_rule(horizon="6h")
    times, values = history(0.1, n=50)  # 6 h needs 4 x 72 steps
    assert forecast_for_rules([rule], "s1", "m", {}, times, values) is None
    assert forecast_for_rules([rule], "s1", "m", {}, times[:1], values[:1]) is None
    # Other kinds of rule need no forecast.
    threshold = Rule.from_input(
        "t1", {"name": "t", "kind": "threshold", "selector": "m", "threshold": 1}
    )
    times, values = history(0.1)
    assert forecast_for_rules([threshold], "s1", "m", {}, times, values) is None
