"""Alert rules and the alert lifecycle on plain data (pure domain logic, no services)."""

from __future__ import annotations

import doctest
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tunelytics.domain.monitoring import alerting
from tunelytics.domain.monitoring.alerting import (
    Alert,
    AlertEngine,
    AlertState,
    AlertStateError,
    Evaluation,
    Incident,
    IncidentState,
    Rule,
    RuleValidationError,
    Selector,
    SeriesSample,
    Severity,
    fingerprint,
    parse_duration,
)
from tunelytics.domain.monitoring.alerting import (
    alerts as alerts_module,
)
from tunelytics.domain.monitoring.alerting import (
    matchers as matchers_module,
)
from tunelytics.domain.monitoring.alerting import (
    noise as noise_module,
)
from tunelytics.domain.monitoring.alerting import (
    rules as rules_module,
)
from tunelytics.domain.monitoring.alerting import (
    silences as silences_module,
)

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def minutes(m: float) -> datetime:
    return T0 + timedelta(minutes=m)


def rule(**data: Any) -> Rule:
    base: dict[str, Any] = {"name": "latency high", "kind": "threshold", "threshold": 500}
    base.setdefault("selector", 'api_latency_ms{service="api"}')
    base.update(data)
    return Rule.from_input("t1", base)


def sample(
    m: float,
    value: float = 0.0,
    score: float | None = None,
    series: str = "s1",
    name: str = "api_latency_ms",
    **labels: str,
) -> SeriesSample:
    return SeriesSample(series, name, labels or {"service": "api"}, minutes(m), value, score)


class Tenant:
    """What a server keeps in storage between engine calls: alerts and incidents by id."""

    def __init__(self, engine: AlertEngine) -> None:
        self.engine = engine
        self.alerts: dict[str, Alert] = {}
        self.incidents: dict[str, Incident] = {}
        self.events: list[Any] = []

    def open_alerts(self) -> list[Alert]:
        return [a for a in self.alerts.values() if a.is_open]

    def open_incidents(self) -> list[Incident]:
        return [i for i in self.incidents.values() if i.is_open]

    def store(self, ev: Evaluation) -> Evaluation:
        # Round-trip through documents, as a Mongo-backed server would.
        for a in ev.changed_alerts:
            self.alerts[a.id] = Alert.from_document(a.to_document())
        for i in ev.changed_incidents:
            self.incidents[i.id] = Incident.from_document(i.to_document())
        for a in ev.dropped_alerts:
            self.alerts.pop(a.id, None)
        self.events.extend(ev.events)
        return ev

    def feed(self, *samples: SeriesSample, now: datetime | None = None) -> Evaluation:
        now = now or max(s.ts for s in samples)
        ev = self.engine.evaluate(list(samples), self.open_alerts(), self.open_incidents(), now)
        return self.store(ev)


def kinds(ev: Evaluation) -> list[str]:
    return [e.kind.value for e in ev.events]


@pytest.mark.parametrize(
    "module",
    [alerting, alerts_module, matchers_module, noise_module, rules_module, silences_module],
)
def test_docstring_examples_run(module: Any) -> None:
    result = doctest.testmod(module)
    assert result.attempted > 0 or module is alerts_module
    assert result.failed == 0


def test_rule_input_errors_name_each_field() -> None:
    with pytest.raises(RuleValidationError) as caught:
        Rule.from_input(
            "t1",
            {
                "name": "",
                "kind": "threshold",
                "selector": 'cpu{host=~"("}',
                "severity": "urgent",
                "for": "5 minutes",
                "op": "=>",
                "resolve_points": 0,
                "business_weight": float("nan"),
            },
        )
    fields = {e.field for e in caught.value.errors}
    assert fields == {
        "name",
        "selector",
        "severity",
        "for",
        "op",
        "resolve_points",
        "business_weight",
        "threshold",
    }
    assert caught.value.field == "name"  # an InvalidItem: batch helpers report it per item
    with pytest.raises(RuleValidationError) as caught:
        Rule.from_input("t1", {"name": "gone", "kind": "absence", "selector": "cpu"})
    assert [e.field for e in caught.value.errors] == ["absent_for"]
    with pytest.raises(RuleValidationError) as caught:
        rule(severity="critical", escalate_at=900, escalate_to="warning")
    assert [e.field for e in caught.value.errors] == ["escalate_to"]


def test_durations_and_selectors_parse_like_prometheus() -> None:
    assert parse_duration("1h30m") == timedelta(minutes=90)
    assert parse_duration(45) == timedelta(seconds=45)
    for bad in ("-5m", "5 m", "5x", -1, float("inf"), True):
        with pytest.raises(ValueError):
            parse_duration(bad)
    s = Selector.parse('{service!="db", region=~"eu-.*", tier!~"test|dev", env="prod"}')
    assert s.name is None
    assert s.matches("any", {"service": "api", "region": "eu-west", "tier": "web", "env": "prod"})
    assert not s.matches(
        "any", {"service": "api", "region": "eu-west", "env": "prod", "tier": "dev"}
    )
    assert not s.matches("any", {"service": "api", "region": "us-eu-1", "env": "prod"})
    assert not s.matches("any", {"region": "eu-west"})  # missing env reads as ""
    assert Selector.parse(str(s)) == s
    structured = Selector.parse({"name": "cpu", "matchers": [{"label": "host", "value": "a"}]})
    assert structured == Selector.parse('cpu{host="a"}')


def test_threshold_alert_fires_dedups_and_resolves_after_recovery() -> None:
    tenant = Tenant(AlertEngine([rule(resolve_points=2)]))
    assert kinds(tenant.feed(sample(0, 100))) == []
    ev = tenant.feed(sample(1, 700))
    assert kinds(ev) == ["fired"]
    first = ev.events[0].alert
    assert first.state is AlertState.FIRING and first.fired_at == minutes(1)
    assert first.labels == {
        "service": "api",
        "alertname": "latency high",
        "__name__": "api_latency_ms",
    }
    # Still breached: the same alert (dedup by fingerprint), no new event.
    assert kinds(tenant.feed(sample(2, 720), sample(3, 650))) == []
    assert [a.id for a in tenant.alerts.values()] == [first.id]
    assert tenant.alerts[first.id].peak_value == 720
    # One good point is not yet recovery; two are.
    assert kinds(tenant.feed(sample(4, 100))) == []
    ev = tenant.feed(sample(5, 100))
    assert kinds(ev) == ["resolved"]
    resolved = tenant.alerts[first.id]
    assert resolved.state is AlertState.RESOLVED and resolved.resolved_at == minutes(5)
    assert resolved.resolved_by is None
    # A relapse is a new alert with the same fingerprint (as Prometheus/Alertmanager do).
    ev = tenant.feed(sample(6, 800))
    again = ev.events[0].alert
    assert kinds(ev) == ["fired"] and again.fingerprint == first.fingerprint
    assert again.id != first.id and again.started_at == minutes(6)


def test_fingerprint_is_stable_and_names_the_series() -> None:
    labels = {"service": "api", "alertname": "x", "__name__": "cpu"}
    assert fingerprint("r1", "s1", labels) == fingerprint(
        "r1", "s1", dict(reversed(labels.items()))
    )
    assert fingerprint("r1", "s1", labels) != fingerprint("r2", "s1", labels)
    assert fingerprint("r1", "s1", labels) != fingerprint("r1", "s2", labels)
    assert fingerprint("r1", "s1", labels) != fingerprint("r1", "s1", {**labels, "service": "db"})
    # Two engines (two replicas) give the same alert the same fingerprint and id.
    r = rule()
    ids = {
        AlertEngine([r]).evaluate([sample(1, 700)], [], [], T0).changed_alerts[0].id for _ in "ab"
    }
    assert len(ids) == 1


def test_for_keeps_an_alert_pending_and_a_short_blip_never_fires() -> None:
    tenant = Tenant(AlertEngine([rule(**{"for": "3m"})]))
    ev = tenant.feed(sample(0, 700))
    assert kinds(ev) == [] and ev.changed_alerts[0].state is AlertState.PENDING
    ev = tenant.feed(sample(1, 100))  # cleared before `for`: forgotten, never announced
    assert kinds(ev) == [] and [a.state for a in ev.dropped_alerts] == [AlertState.PENDING]
    assert tenant.alerts == {}
    tenant.feed(sample(2, 700), sample(3, 700), sample(4, 700))
    ev = tenant.feed(sample(5, 700))
    assert kinds(ev) == ["fired"]
    assert ev.events[0].alert.started_at == minutes(2)
    assert ev.events[0].alert.fired_at == minutes(5)


def test_anomaly_rules_read_the_score_and_skip_unscored_points() -> None:
    r = rule(kind="anomaly", min_score=0.9, selector="api_latency_ms")
    tenant = Tenant(AlertEngine([r]))
    assert kinds(tenant.feed(sample(0, 1e9, None), sample(1, 5, 0.5))) == []
    ev = tenant.feed(sample(2, 5, 0.97))
    assert kinds(ev) == ["fired"] and ev.events[0].alert.peak_score == 0.97
    assert kinds(tenant.feed(sample(3, 5, None))) == []  # no information: no recovery step
    assert kinds(tenant.feed(sample(4, 5, 0.1), sample(5, 5, 0.2))) == ["resolved"]


def test_rules_match_only_their_series() -> None:
    engine = AlertEngine(
        [
            rule(name="api", selector='api_latency_ms{service="api"}'),
            rule(name="not db", selector='{service!="db"}', threshold=10),
            rule(name="off", selector="api_latency_ms", enabled=False),
        ]
    )
    ev = engine.evaluate(
        [
            sample(0, 700, series="a", service="api"),
            sample(0, 700, series="d", service="db"),
            sample(0, 700, series="c", name="cpu", service="web"),
        ],
        [],
        [],
        T0,
    )
    fired = sorted((e.alert.rule_name, e.alert.series_id) for e in ev.events)
    assert fired == [("api", "a"), ("not db", "a"), ("not db", "c")]


def test_acknowledge_and_manual_resolve() -> None:
    tenant = Tenant(AlertEngine([rule()]))
    alert = tenant.feed(sample(0, 700)).changed_alerts[0]
    incident = tenant.incidents[alert.incident_id or ""]
    ev = tenant.store(
        tenant.engine.acknowledge(tenant.alerts[alert.id], "ana", minutes(1), incident)
    )
    assert kinds(ev) == ["acknowledged"] and ev.events[0].notify
    acked = tenant.alerts[alert.id]
    assert acked.state is AlertState.ACKNOWLEDGED and acked.acknowledged_by == "ana"
    assert tenant.engine.acknowledge(acked, "ana", minutes(2)).events == []
    # Acknowledged alerts still resolve by themselves.
    assert kinds(tenant.feed(sample(2, 100), sample(3, 100))) == ["resolved"]
    with pytest.raises(AlertStateError):
        tenant.engine.acknowledge(tenant.alerts[alert.id], "ana", minutes(4))
    with pytest.raises(AlertStateError):
        tenant.engine.resolve(tenant.alerts[alert.id], "ana", minutes(4))
    # Manual resolution while still breached: the next point opens a new alert.
    second = tenant.feed(sample(5, 700)).changed_alerts[0]
    ev = tenant.engine.resolve(second, "bo", minutes(6), tenant.incidents[second.incident_id or ""])
    tenant.store(ev)
    assert kinds(ev) == ["resolved"] and ev.events[0].alert.resolved_by == "bo"
    assert ev.changed_incidents[0].state is IncidentState.RESOLVED
    third = tenant.feed(sample(7, 700)).events[0].alert
    assert third.id != second.id and third.fingerprint == second.fingerprint


def test_documents_round_trip_with_naive_datetimes() -> None:
    r = rule(labels={"team": "core"}, group_by=["service", "region"], escalate_at=900,
             escalate_to="critical", business_weight=2.0)  # fmt: skip
    assert Rule.from_document(r.to_document()) == r
    ev = AlertEngine([r]).evaluate([sample(0, 700)], [], [], T0)
    alert, incident = ev.changed_alerts[0], ev.changed_incidents[0]
    doc = alert.to_document()
    naive = {k: v.replace(tzinfo=None) if isinstance(v, datetime) else v for k, v in doc.items()}
    assert Alert.from_document(naive) == alert
    assert Incident.from_document(incident.to_document()) == incident
    assert doc["_id"] == alert.id and doc["tenant_id"] == "t1" and doc["severity"] == "warning"


def test_severity_is_ordered() -> None:
    assert Severity.INFO < Severity.WARNING < Severity.CRITICAL
    assert Severity.parse("Critical") is Severity.CRITICAL
    assert max(Severity.parse("info"), Severity.WARNING) is Severity.WARNING
