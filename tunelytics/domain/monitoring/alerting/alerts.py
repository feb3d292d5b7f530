"""Alerts, incidents and the events that announce them, with fingerprints and priority."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tunelytics.domain.monitoring.alerting.model import (
    ACTIVE_STATES,
    OPEN_STATES,
    AlertState,
    EventKind,
    Feedback,
    IncidentState,
    RuleKind,
    Severity,
    opt_utc,
    utc,
)


def fingerprint(rule_id: str, series_id: str, labels: Mapping[str, str]) -> str:
    """Stable hash of the rule id, the series id and the alert's full label set (which
    holds the series name as __name__, the series' labels and the rule's labels): the
    dedup key, the same in every process and every run."""
    h = hashlib.blake2b(rule_id.encode() + b"\0" + series_id.encode(), digest_size=8)
    for key in sorted(labels):
        h.update(b"\xff" + key.encode() + b"\xfe" + labels[key].encode())
    return h.hexdigest()


def group_key(group_by: Iterable[str], labels: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    """The incident key of an alert: its values of the group_by labels (missing reads as
    empty, as in Alertmanager), hashed; and those values."""
    values = {name: labels.get(name, "") for name in sorted(set(group_by))}
    h = hashlib.blake2b(digest_size=8)
    for key, value in values.items():
        h.update(b"\xff" + key.encode() + b"\xfe" + value.encode())
    return h.hexdigest(), values


SEVERITY_BASE = {Severity.INFO: 0.1, Severity.WARNING: 0.3, Severity.CRITICAL: 0.5}
DURATION_SCALE_S = 900.0
TIERS = ((0.8, "P1"), (0.6, "P2"), (0.4, "P3"))


def priority(
    severity: Severity, strength: float, firing_s: float, series_count: int, weight: float
) -> float:
    """Priority in [0, 1]:

        raw = base(severity) + (1 - base) * (0.5 * strength + 0.25 * d + 0.25 * b)
        p   = 1 - (1 - raw) ** weight

    base is 0.1 / 0.3 / 0.5 for info / warning / critical; strength in [0, 1] is how far
    past its condition the alert's worst point went (the anomaly score above min_score,
    the relative excess over a threshold, the absence beyond absent_for);
    d = 1 - exp(-firing seconds / 900) grows with duration; b = 1 - 1 / n with n series
    affected in the alert's incident; weight is the series' business weight (1 neutral,
    2 doubles the distance from 0, 0.5 halves it). Tiers: P1 >= 0.8, P2 >= 0.6,
    P3 >= 0.4, else P4.

    >>> round(priority(Severity.WARNING, 0.5, 0.0, 1, 1.0), 3), priority_tier(0.475)
    (0.475, 'P3')
    """
    base = SEVERITY_BASE[severity]
    d = 1.0 - math.exp(-max(firing_s, 0.0) / DURATION_SCALE_S)
    b = 1.0 - 1.0 / max(series_count, 1)
    raw = base + (1.0 - base) * (0.5 * strength + 0.25 * d + 0.25 * b)
    return 1.0 - (1.0 - min(raw, 1.0)) ** max(weight, 0.01)


def priority_tier(p: float) -> str:
    for bound, tier in TIERS:
        if p >= bound:
            return tier
    return "P4"


def tier_rank(p: float) -> int:
    """0 for P4 .. 3 for P1, to compare tiers."""
    return 4 - int(priority_tier(p)[1])


@dataclass(slots=True)
class Alert:
    """One alert: a rule's condition on one series, from pending to resolved.

    Event-time fields (started_at, fired_at, resolved_at, last_true_at) come from the
    points' timestamps, so a replay of old data gives the same alerts; notification
    fields (last_notified_at) and operator actions use wall-clock `now`.
    """

    id: str
    tenant_id: str
    fingerprint: str
    rule_id: str
    rule_name: str
    kind: RuleKind
    series_id: str
    series_name: str
    labels: dict[str, str]
    severity: Severity
    state: AlertState
    started_at: datetime
    updated_at: datetime
    fired_at: datetime | None = None
    resolved_at: datetime | None = None
    resolved_by: str | None = None  # None: resolved automatically
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    last_true_at: datetime | None = None
    clear_points: int = 0
    last_value: float | None = None
    last_score: float | None = None
    peak_value: float | None = None
    peak_score: float | None = None
    strength: float = 0.0
    business_weight: float = 1.0
    priority: float = 0.0
    escalation_rank: int = 0  # highest (severity, strength tier) reached: ESCALATED once each
    incident_id: str | None = None
    last_notified_at: datetime | None = None
    notifications: int = 0
    silenced_by: list[str] = field(default_factory=list)
    inhibited: bool = False
    noise_probability: float | None = None
    features: dict[str, float] = field(default_factory=dict)
    feedback: Feedback | None = None
    feedback_by: str | None = None
    feedback_at: datetime | None = None
    summary: str = ""
    # Facts about the latest evaluation that are not identity (labels are): a forecast
    # alert's predicted crossing time and value, the model that forecast it.
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES

    @property
    def is_active(self) -> bool:
        """Firing or acknowledged: what incidents and inhibition count."""
        return self.state in ACTIVE_STATES

    @property
    def priority_tier(self) -> str:
        return priority_tier(self.priority)

    def match_labels(self) -> dict[str, str]:
        """Labels that silences and inhibition rules see: the alert's plus severity."""
        return {**self.labels, "severity": self.severity.label}

    def to_document(self) -> dict[str, Any]:
        return {
            "_id": self.id,
            "tenant_id": self.tenant_id,
            "fingerprint": self.fingerprint,
            "rule_id": self.rule_id,
            "rule_name": self.rule_name,
            "kind": self.kind.value,
            "series_id": self.series_id,
            "series_name": self.series_name,
            "labels": dict(self.labels),
            "severity": self.severity.label,
            "severity_rank": int(self.severity),
            "state": self.state.value,
            "started_at": self.started_at,
            "updated_at": self.updated_at,
            "fired_at": self.fired_at,
            "resolved_at": self.resolved_at,
            "resolved_by": self.resolved_by,
            "acknowledged_at": self.acknowledged_at,
            "acknowledged_by": self.acknowledged_by,
            "last_true_at": self.last_true_at,
            "clear_points": self.clear_points,
            "last_value": self.last_value,
            "last_score": self.last_score,
            "peak_value": self.peak_value,
            "peak_score": self.peak_score,
            "strength": self.strength,
            "business_weight": self.business_weight,
            "priority": self.priority,
            "priority_tier": self.priority_tier,
            "escalation_rank": self.escalation_rank,
            "incident_id": self.incident_id,
            "last_notified_at": self.last_notified_at,
            "notifications": self.notifications,
            "silenced_by": list(self.silenced_by),
            "inhibited": self.inhibited,
            "noise_probability": self.noise_probability,
            # Pairs, not a sub-document: feature names hold label values, which may
            # contain "." or start with "$" (awkward as Mongo field names).
            "features": [[k, v] for k, v in self.features.items()],
            "feedback": None if self.feedback is None else self.feedback.value,
            "feedback_by": self.feedback_by,
            "feedback_at": self.feedback_at,
            "summary": self.summary,
            "annotations": dict(self.annotations),
        }

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> Alert:
        feedback = doc.get("feedback")
        return cls(
            id=str(doc.get("_id", doc.get("id"))),
            tenant_id=doc["tenant_id"],
            fingerprint=doc["fingerprint"],
            rule_id=doc["rule_id"],
            rule_name=doc.get("rule_name", ""),
            kind=RuleKind(doc["kind"]),
            series_id=doc["series_id"],
            series_name=doc.get("series_name", ""),
            labels=dict(doc.get("labels") or {}),
            severity=Severity.parse(doc["severity"]),
            state=AlertState(doc["state"]),
            started_at=utc(doc["started_at"]),
            updated_at=utc(doc["updated_at"]),
            fired_at=opt_utc(doc.get("fired_at")),
            resolved_at=opt_utc(doc.get("resolved_at")),
            resolved_by=doc.get("resolved_by"),
            acknowledged_at=opt_utc(doc.get("acknowledged_at")),
            acknowledged_by=doc.get("acknowledged_by"),
            last_true_at=opt_utc(doc.get("last_true_at")),
            clear_points=int(doc.get("clear_points", 0)),
            last_value=doc.get("last_value"),
            last_score=doc.get("last_score"),
            peak_value=doc.get("peak_value"),
            peak_score=doc.get("peak_score"),
            strength=float(doc.get("strength", 0.0)),
            business_weight=float(doc.get("business_weight", 1.0)),
            priority=float(doc.get("priority", 0.0)),
            escalation_rank=int(doc.get("escalation_rank", 0)),
            incident_id=doc.get("incident_id"),
            last_notified_at=opt_utc(doc.get("last_notified_at")),
            notifications=int(doc.get("notifications", 0)),
            silenced_by=list(doc.get("silenced_by") or []),
            inhibited=bool(doc.get("inhibited", False)),
            noise_probability=doc.get("noise_probability"),
            features=_features(doc.get("features")),
            feedback=None if feedback is None else Feedback(feedback),
            feedback_by=doc.get("feedback_by"),
            feedback_at=opt_utc(doc.get("feedback_at")),
            summary=doc.get("summary", ""),
            annotations=dict(doc.get("annotations") or {}),
        )


def _features(raw: Any) -> dict[str, float]:
    pairs = raw.items() if isinstance(raw, Mapping) else (raw or ())
    return {str(k): float(v) for k, v in pairs}


@dataclass(slots=True)
class IncidentMember:
    """What an incident keeps of each active member alert (so it needs no join)."""

    series_id: str
    severity: Severity
    priority: float


@dataclass(slots=True)
class Incident:
    """Active alerts sharing their group_by label values. Severity is the members' max,
    priority the members' max; it resolves when its last member resolves."""

    id: str
    tenant_id: str
    group_key: str
    group_labels: dict[str, str]
    state: IncidentState
    severity: Severity
    priority: float
    started_at: datetime
    updated_at: datetime
    resolved_at: datetime | None = None
    alert_ids: list[str] = field(default_factory=list)
    members: dict[str, IncidentMember] = field(default_factory=dict)  # active alerts
    peak_series_count: int = 0
    escalation_rank: int = 0  # how many times the incident escalated

    @property
    def is_open(self) -> bool:
        return self.state is IncidentState.OPEN

    @property
    def series_count(self) -> int:
        return len({m.series_id for m in self.members.values()})

    @property
    def priority_tier(self) -> str:
        return priority_tier(self.priority)

    def to_document(self) -> dict[str, Any]:
        return {
            "_id": self.id,
            "tenant_id": self.tenant_id,
            "group_key": self.group_key,
            "group_labels": dict(self.group_labels),
            "state": self.state.value,
            "severity": self.severity.label,
            "severity_rank": int(self.severity),
            "priority": self.priority,
            "priority_tier": self.priority_tier,
            "started_at": self.started_at,
            "updated_at": self.updated_at,
            "resolved_at": self.resolved_at,
            "alert_ids": list(self.alert_ids),
            "members": {
                k: {"series_id": m.series_id, "severity": m.severity.label, "priority": m.priority}
                for k, m in self.members.items()
            },
            "series_count": self.series_count,
            "peak_series_count": self.peak_series_count,
            "escalation_rank": self.escalation_rank,
        }

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> Incident:
        return cls(
            id=str(doc.get("_id", doc.get("id"))),
            tenant_id=doc["tenant_id"],
            group_key=doc["group_key"],
            group_labels=dict(doc.get("group_labels") or {}),
            state=IncidentState(doc["state"]),
            severity=Severity.parse(doc["severity"]),
            priority=float(doc.get("priority", 0.0)),
            started_at=utc(doc["started_at"]),
            updated_at=utc(doc["updated_at"]),
            resolved_at=opt_utc(doc.get("resolved_at")),
            alert_ids=list(doc.get("alert_ids") or []),
            members={
                k: IncidentMember(m["series_id"], Severity.parse(m["severity"]), m["priority"])
                for k, m in (doc.get("members") or {}).items()
            },
            peak_series_count=int(doc.get("peak_series_count", 0)),
            escalation_rank=int(doc.get("escalation_rank", 0)),
        )


@dataclass(slots=True)
class AlertEvent:
    """What H3 publishes (subscriptions, webhooks). `alert` and `incident` are snapshots
    taken when the event happened. notify=False: silenced or inhibited (or a resolution
    of an alert that was never notified) - store and show it, do not page anyone.
    repeat=True: a FIRED re-notification after repeat_interval."""

    kind: EventKind
    alert: Alert
    incident: Incident | None
    at: datetime
    notify: bool = True
    repeat: bool = False
    reason: str = ""

    def to_document(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "alert": self.alert.to_document(),
            "incident": None if self.incident is None else self.incident.to_document(),
            "at": self.at,
            "notify": self.notify,
            "repeat": self.repeat,
            "reason": self.reason,
        }


@dataclass(slots=True)
class Evaluation:
    """What one engine call changed. Write changed_alerts and changed_incidents back
    (upsert by _id); delete dropped_alerts (pending alerts whose condition cleared before
    `for` elapsed: Prometheus forgets them, they were never announced); publish events."""

    changed_alerts: list[Alert] = field(default_factory=list)
    changed_incidents: list[Incident] = field(default_factory=list)
    events: list[AlertEvent] = field(default_factory=list)
    dropped_alerts: list[Alert] = field(default_factory=list)
