"""Alert rules and the alert lifecycle, as pure domain code (no GraphQL, no Mongo).

Semantics follow Prometheus + Alertmanager where they have one; see docs/architecture.md
("Alerting") for where and why this differs.

Public API (names are stable; additions only)
---------------------------------------------
Vocabulary (model.py)
    Severity            IntEnum INFO < WARNING < CRITICAL; Severity.parse("warning");
                        .label -> "warning" (what documents store)
    RuleKind            ANOMALY | THRESHOLD | ABSENCE | FORECAST
    AlertState          PENDING -> FIRING -> ACKNOWLEDGED -> RESOLVED
    IncidentState       OPEN | RESOLVED
    EventKind           FIRED | ESCALATED | ACKNOWLEDGED | RESOLVED
    Feedback            USEFUL | NOISE
    SeriesSample(series_id, name, labels, ts, value, score=None)   one scored point
    SeriesPresence(series_id, name, labels, last_seen)             for absence rules
    SeriesForecast(series_id, name, labels, origin, timestamps, mean, bounds, model)
                        for forecast rules; bounds: level -> (lower, upper)
    FieldError(field, message); RuleValidationError(errors) (an InvalidItem: map it
                        to BAD_USER_INPUT, one extension entry per FieldError);
    AlertStateError     (ValueError) e.g. acknowledging a resolved alert
    parse_duration("1h30m" | 90 | timedelta) -> timedelta

Configuration
    Selector.parse('name{label="v", other=~"re"}' | {name, matchers: [...]})
    Matcher.of(label, op, value), ops = != =~ !~ (anchored regex, missing label = "";
                        silences and inhibition also see a `severity` label)
    Rule.from_input(tenant_id, data, rule_id=None) -> Rule   (raises RuleValidationError)
        data keys: name, kind, selector, severity, labels, for, repeat_interval,
        resolve_after, resolve_points, min_score (anomaly; default ANOMALY_SCORE),
        op + threshold (threshold),
        absent_for (absence), horizon + forecast_level + forecast_on + every +
        history with op + threshold (forecast), group_by, group_window,
        business_weight, weight_label, escalate_at + escalate_to, summary, enabled.
        Without an id, the id hashes tenant and name (so names should be unique per
        tenant).
    Silence.from_input(tenant_id, {matchers, starts_at, ends_at, created_by, comment})
                        .is_active(now), .status(now): pending | active | expired
    InhibitRule(source_matchers, target_matchers, equal); DEFAULT_INHIBITIONS
        (critical mutes warning/info on the same service; warning mutes info)
    Every Rule, Alert, Incident, Silence has to_document() / from_document(doc): plain
    dicts with "_id", "tenant_id" and aware UTC datetimes (naive ones read as UTC).

State (alerts.py)
    Alert               id = fingerprint + "-" + ms when first seen (deterministic, so
                        replicas agree); fingerprint = fingerprint(
                        rule_id, series_id, labels) (blake2b, stable across processes);
                        labels = series labels + rule labels + alertname + __name__
    Incident            group_key/group_labels, members (active alerts), severity (max),
                        priority (max), series_count, alert_ids (all members, capped)
    AlertEvent(kind, alert, incident, at, notify, repeat, reason)   snapshots; what
                        to publish. notify=False: silenced/inhibited, store but don't page.
    Evaluation(changed_alerts, changed_incidents, events, dropped_alerts)
    priority(severity, strength, firing_s, series_count, weight) -> [0, 1];
    priority_tier(p) -> "P1".."P4"   (formula in priority's docstring)

Engine (engine.py), stateless between calls: build one per tenant when its rules or
silences change, keep it (it caches rule matches per series id), and per call pass the
tenant's open (unresolved) alerts and open incidents; it updates them in place and
returns what changed:
    AlertEngine(rules, silences=(), inhibitions=DEFAULT_INHIBITIONS, noise_model=None,
                tenant_id=None)   one tenant per engine; others' state is ignored
    .evaluate(samples, open_alerts, open_incidents, now) -> Evaluation
    .check_absence(presences, open_alerts, open_incidents, now) -> Evaluation
    .forecast_rules(series_id, name, labels) -> [Rule]   what to forecast a series for
    .check_forecasts(forecasts, open_alerts, open_incidents, now) -> Evaluation
                        predictive alerts (annotations: forecast_crossing_at,
                        forecast_value, forecast_mean, forecast_on, forecast_origin,
                        forecast_model, threshold)
    .tick(open_alerts, open_incidents, now) -> Evaluation     repeats, priorities, removed
                        rules, stale incident members (pass ALL open alerts)
    .acknowledge(alert, by, now, incident=None) -> Evaluation
    .resolve(alert, by, now, incident=None) -> Evaluation
    .record_feedback(alert, "useful" | "noise", by, now) -> Alert   (teaches noise_model)
Events: FIRED when an alert starts firing (and, repeat=True, again after
repeat_interval while firing and not acknowledged; a silenced/inhibited alert that
becomes unmuted gets one FIRED then); ESCALATED (reason "severity": escalate_at reached;
"priority": its strength/weight tier rose; "incident": it raised its incident's severity
or the incident reached 2, 4, 8... series); ACKNOWLEDGED; RESOLVED (resolved_by None:
automatic). Whether to notify is decided at the end of each call, against the state
after the whole batch (like an Alertmanager group flush).
Write back: upsert changed_alerts / changed_incidents by _id, delete dropped_alerts,
publish events (a webhook or subscription sends only those with notify=True, or shows
notify=False ones as muted).

Noise model (noise.py): NoiseModel().learn_one(features, is_noise) / predict_proba_one /
to_state() / NoiseModel.from_state(state); Alert.features holds the features it fired
with and Alert.noise_probability the model's guess then.

Example
-------
>>> from datetime import UTC, datetime, timedelta
>>> rule = Rule.from_input("t1", {"name": "latency anomaly", "kind": "anomaly",
...     "selector": 'api_latency_ms{service="api"}', "min_score": 0.9,
...     "severity": "warning", "escalate_at": 0.99, "escalate_to": "critical"})
>>> engine = AlertEngine([rule])
>>> t0 = datetime(2026, 12, 1, 12, tzinfo=UTC)
>>> def point(minute, score):
...     return SeriesSample("s1", "api_latency_ms", {"service": "api"},
...                         t0 + timedelta(minutes=minute), 120.0, score)
>>> ev = engine.evaluate([point(0, 0.2), point(1, 0.95)], [], [], now=t0)
>>> [(e.kind.value, e.alert.state.value, e.notify) for e in ev.events]
[('fired', 'firing', True)]
>>> alert, incident = ev.changed_alerts[0], ev.changed_incidents[0]
>>> incident.group_labels, alert.labels["alertname"]
({'service': 'api'}, 'latency anomaly')
>>> ev = engine.evaluate([point(2, 0.995)], [alert], [incident], now=t0)
>>> [(e.kind.value, e.alert.severity.label) for e in ev.events]
[('escalated', 'critical')]
>>> ev = engine.evaluate([point(3, 0.1), point(4, 0.1)], [alert], [incident], now=t0)
>>> [e.kind.value for e in ev.events], alert.state.value, incident.state.value
(['resolved'], 'resolved', 'resolved')
"""

from tunelytics.domain.monitoring.alerting.alerts import (
    Alert,
    AlertEvent,
    Evaluation,
    Incident,
    IncidentMember,
    fingerprint,
    group_key,
    priority,
    priority_tier,
)
from tunelytics.domain.monitoring.alerting.engine import AlertEngine
from tunelytics.domain.monitoring.alerting.matchers import (
    Matcher,
    MatcherError,
    Selector,
    parse_matchers,
)
from tunelytics.domain.monitoring.alerting.model import (
    AlertState,
    AlertStateError,
    EventKind,
    Feedback,
    FieldError,
    IncidentState,
    RuleKind,
    RuleValidationError,
    SeriesForecast,
    SeriesPresence,
    SeriesSample,
    Severity,
    parse_duration,
)
from tunelytics.domain.monitoring.alerting.noise import NoiseModel, alert_features
from tunelytics.domain.monitoring.alerting.rules import ANOMALY_SCORE, Rule
from tunelytics.domain.monitoring.alerting.silences import (
    DEFAULT_INHIBITIONS,
    InhibitRule,
    Silence,
)

__all__ = [
    "ANOMALY_SCORE",
    "DEFAULT_INHIBITIONS",
    "Alert",
    "AlertEngine",
    "AlertEvent",
    "AlertState",
    "AlertStateError",
    "Evaluation",
    "EventKind",
    "Feedback",
    "FieldError",
    "Incident",
    "IncidentMember",
    "IncidentState",
    "InhibitRule",
    "Matcher",
    "MatcherError",
    "NoiseModel",
    "Rule",
    "RuleKind",
    "RuleValidationError",
    "Selector",
    "SeriesForecast",
    "SeriesPresence",
    "SeriesSample",
    "Severity",
    "Silence",
    "alert_features",
    "fingerprint",
    "group_key",
    "parse_duration",
    "parse_matchers",
    "priority",
    "priority_tier",
]
