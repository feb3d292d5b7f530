"""GraphQL types and root fields of alerts, incidents, rules, silences and webhooks."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from datetime import UTC, datetime
from enum import Enum
from typing import Any

import strawberry
from strawberry import Info

from tunelytics.domain.monitoring import alerting as domain
from tunelytics.resolvers import alerts as resolvers
from tunelytics.resolvers.context import Context
from tunelytics.schema.connections import Connection, connection
from tunelytics.schema.monitoring import Label, LabelInput
from tunelytics.services.alerts import revive
from tunelytics.storage.alerts import AlertFilter as AlertQuery
from tunelytics.storage.alerts import Webhook as WebhookEntity

CtxInfo = Info[Context, None]


@strawberry.enum
class Severity(Enum):
    INFO = 0
    WARNING = 1
    CRITICAL = 2


@strawberry.enum
class AlertStatus(Enum):
    PENDING = "pending"
    FIRING = "firing"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


@strawberry.enum
class IncidentStatus(Enum):
    OPEN = "open"
    RESOLVED = "resolved"


@strawberry.enum
class RuleKind(Enum):
    ANOMALY = "anomaly"
    THRESHOLD = "threshold"
    ABSENCE = "absence"
    FORECAST = "forecast"


@strawberry.enum
class ForecastOn(Enum):
    """What a forecast rule compares with its threshold."""

    BOUND = "bound"  # the interval bound on the threshold's side (upper for > and >=)
    MEAN = "mean"  # the point forecast


@strawberry.enum
class AlertEventKind(Enum):
    FIRED = "fired"
    ESCALATED = "escalated"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


@strawberry.enum
class AlertFeedback(Enum):
    USEFUL = "useful"
    NOISE = "noise"


def _labels(labels: dict[str, str]) -> list[Label]:
    return [Label(name=k, value=v) for k, v in sorted(labels.items())]


@strawberry.type
class Alert:
    id: strawberry.ID
    fingerprint: str
    rule_id: strawberry.ID
    rule_name: str
    series_id: strawberry.ID
    series_name: str
    labels: list[Label]
    severity: Severity
    status: AlertStatus
    priority: float
    priority_tier: str
    started_at: datetime
    fired_at: datetime | None
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resolved_at: datetime | None
    resolved_by: str | None
    last_value: float | None
    last_score: float | None
    peak_score: float | None
    incident_id: strawberry.ID | None
    silenced: bool
    inhibited: bool
    noise_probability: float | None
    feedback: AlertFeedback | None
    summary: str
    annotations: list[Label] = strawberry.field(
        description="Facts of the latest evaluation; forecast alerts: forecast_crossing_at, "
        "forecast_value, forecast_mean, forecast_on, forecast_origin, forecast_model, threshold."
    )

    @classmethod
    def of(cls, a: domain.Alert) -> Alert:
        return cls(
            id=strawberry.ID(a.id),
            fingerprint=a.fingerprint,
            rule_id=strawberry.ID(a.rule_id),
            rule_name=a.rule_name,
            series_id=strawberry.ID(a.series_id),
            series_name=a.series_name,
            labels=_labels(a.labels),
            severity=Severity(int(a.severity)),
            status=AlertStatus(a.state.value),
            priority=a.priority,
            priority_tier=a.priority_tier,
            started_at=a.started_at,
            fired_at=a.fired_at,
            acknowledged_at=a.acknowledged_at,
            acknowledged_by=a.acknowledged_by,
            resolved_at=a.resolved_at,
            resolved_by=a.resolved_by,
            last_value=a.last_value,
            last_score=a.last_score,
            peak_score=a.peak_score,
            incident_id=strawberry.ID(a.incident_id) if a.incident_id else None,
            silenced=bool(a.silenced_by),
            inhibited=a.inhibited,
            noise_probability=a.noise_probability,
            feedback=AlertFeedback(a.feedback.value) if a.feedback else None,
            summary=a.summary,
            annotations=_labels(a.annotations),
        )


@strawberry.type
class Incident:
    id: strawberry.ID
    status: IncidentStatus
    severity: Severity
    priority: float
    priority_tier: str
    group_labels: list[Label]
    series_count: int
    alert_ids: list[strawberry.ID]
    started_at: datetime
    resolved_at: datetime | None

    @classmethod
    def of(cls, i: domain.Incident) -> Incident:
        return cls(
            id=strawberry.ID(i.id),
            status=IncidentStatus(i.state.value),
            severity=Severity(int(i.severity)),
            priority=i.priority,
            priority_tier=i.priority_tier,
            group_labels=_labels(i.group_labels),
            series_count=i.series_count,
            alert_ids=[strawberry.ID(a) for a in i.alert_ids],
            started_at=i.started_at,
            resolved_at=i.resolved_at,
        )


@strawberry.type
class AlertRule:
    id: strawberry.ID
    name: str
    kind: RuleKind
    selector: str
    severity: Severity
    labels: list[Label]
    min_score: float
    threshold: float
    op: str
    for_seconds: float
    absent_for_seconds: float
    horizon_seconds: float
    forecast_level: float
    forecast_on: ForecastOn
    every_seconds: float
    enabled: bool
    summary: str

    @classmethod
    def of(cls, r: domain.Rule) -> AlertRule:
        return cls(
            id=strawberry.ID(r.id),
            name=r.name,
            kind=RuleKind(r.kind.value),
            selector=str(r.selector),
            severity=Severity(int(r.severity)),
            labels=_labels(r.labels),
            min_score=r.min_score,
            threshold=r.threshold,
            op=r.op,
            for_seconds=r.for_.total_seconds(),
            absent_for_seconds=r.absent_for.total_seconds(),
            horizon_seconds=r.horizon.total_seconds(),
            forecast_level=r.forecast_level,
            forecast_on=ForecastOn(r.forecast_on),
            every_seconds=r.every.total_seconds(),
            enabled=r.enabled,
            summary=r.summary,
        )


@strawberry.type
class Silence:
    id: strawberry.ID
    matchers: list[str]
    starts_at: datetime
    ends_at: datetime
    created_by: str
    comment: str
    status: str

    @classmethod
    def of(cls, s: domain.Silence) -> Silence:
        return cls(
            id=strawberry.ID(s.id),
            matchers=[str(m) for m in s.matchers],
            starts_at=s.starts_at,
            ends_at=s.ends_at,
            created_by=s.created_by,
            comment=s.comment,
            status=s.status(datetime.now(UTC)),
        )


@strawberry.type
class Webhook:
    id: strawberry.ID
    url: str
    min_severity: Severity
    created_at: datetime

    @classmethod
    def of(cls, w: WebhookEntity) -> Webhook:
        return cls(
            id=strawberry.ID(w.id),
            url=w.url,
            min_severity=Severity(w.min_severity_rank),
            created_at=w.created_at,
        )


@strawberry.type
class CreateWebhookPayload:
    webhook: Webhook
    secret: str = strawberry.field(
        description="HMAC-SHA256 key of X-Tunelytics-Signature; shown only here, once."
    )


@strawberry.type
class AlertEvent:
    kind: AlertEventKind
    at: datetime
    notify: bool = strawberry.field(description="False when silenced or inhibited.")
    repeat: bool
    alert: Alert
    incident: Incident | None

    @classmethod
    def of(cls, message: dict[str, Any]) -> AlertEvent:
        alert = domain.Alert.from_document(revive(message["alert"]))
        incident = message.get("incident")
        return cls(
            kind=AlertEventKind(message["kind"]),
            at=datetime.fromisoformat(message["at"]),
            notify=message["notify"],
            repeat=message["repeat"],
            alert=Alert.of(alert),
            incident=Incident.of(domain.Incident.from_document(revive(incident)))
            if incident
            else None,
        )


@strawberry.input
class AlertFilter:
    status: list[AlertStatus] | None = None
    min_severity: Severity | None = None
    rule_id: strawberry.ID | None = None

    def to_query(self) -> AlertQuery:
        return AlertQuery(
            states=tuple(s.value for s in self.status or ()),
            min_severity_rank=None if self.min_severity is None else self.min_severity.value,
            rule_id=self.rule_id,
        )


@strawberry.input
class AlertRuleInput:
    name: str
    kind: RuleKind
    selector: str = strawberry.field(description='e.g. api_latency_ms{service="api"}')
    severity: Severity = Severity.WARNING
    labels: list[LabelInput] = strawberry.field(default_factory=list)
    for_: str | None = strawberry.field(
        default=None, name="for", description="How long the condition must hold: 90s, 5m."
    )
    repeat_interval: str | None = None
    min_score: float | None = strawberry.field(
        default=None,
        description=f"Anomaly rules: breached at this score or above (default"
        f" {domain.ANOMALY_SCORE}, the detector's alarm level: plain noise reaches it about"
        " once in 2,000 points).",
    )
    op: str | None = None
    threshold: float | None = None
    absent_for: str | None = None
    group_by: list[str] | None = None
    business_weight: float | None = None
    escalate_at: float | None = None
    escalate_to: Severity | None = None
    horizon: str | None = strawberry.field(
        default=None, description="Forecast rules: how far ahead to look, e.g. 6h."
    )
    forecast_level: float | None = strawberry.field(
        default=None, description="Forecast rules: the interval level of BOUND (0.8)."
    )
    forecast_on: ForecastOn | None = None
    every: str | None = strawberry.field(
        default=None, description="Forecast rules: how often each series is re-forecast (5m)."
    )
    history: str | None = strawberry.field(
        default=None, description="Forecast rules: how much of each series to learn from (7d)."
    )
    summary: str | None = None
    enabled: bool = True

    def to_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind.value,
            "selector": self.selector,
            "severity": Severity(self.severity).name.lower(),
            "labels": {label.name: label.value for label in self.labels},
            "enabled": self.enabled,
        }
        optional = {
            "for": self.for_,
            "repeat_interval": self.repeat_interval,
            "min_score": self.min_score,
            "op": self.op,
            "threshold": self.threshold,
            "absent_for": self.absent_for,
            "group_by": self.group_by,
            "business_weight": self.business_weight,
            "escalate_at": self.escalate_at,
            "escalate_to": None if self.escalate_to is None else self.escalate_to.name.lower(),
            "horizon": self.horizon,
            "forecast_level": self.forecast_level,
            "forecast_on": None if self.forecast_on is None else self.forecast_on.value,
            "every": self.every,
            "history": self.history,
            "summary": self.summary,
        }
        data.update({k: v for k, v in optional.items() if v is not None})
        return data


@strawberry.input
class SilenceInput:
    matchers: str = strawberry.field(description='e.g. service="api", severity=~"warning|info"')
    ends_at: datetime
    comment: str
    starts_at: datetime | None = None

    def to_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "matchers": self.matchers,
            "ends_at": self.ends_at,
            "comment": self.comment,
        }
        if self.starts_at is not None:
            data["starts_at"] = self.starts_at
        return data


@strawberry.type
class AlertQueryRoot:
    @strawberry.field(description="Your tenant's alerts, newest first.")
    async def alerts(
        self,
        info: CtxInfo,
        filter: AlertFilter | None = None,
        first: int = 20,
        after: str | None = None,
    ) -> Connection[Alert]:
        where = (filter or AlertFilter()).to_query()
        page = await resolvers.alerts(info, where, first, after)
        return connection(page, resolvers.ORDER, Alert.of, has_previous=after is not None)

    @strawberry.field
    async def alert(self, info: CtxInfo, id: strawberry.ID) -> Alert | None:
        found = await resolvers.alert(info, id)
        return Alert.of(found) if found else None

    @strawberry.field(description="Groups of related alerts, newest first.")
    async def incidents(
        self,
        info: CtxInfo,
        status: list[IncidentStatus] | None = None,
        first: int = 20,
        after: str | None = None,
    ) -> Connection[Incident]:
        states = tuple(s.value for s in status or ())
        page = await resolvers.incidents(info, states, first, after)
        return connection(page, resolvers.ORDER, Incident.of, has_previous=after is not None)

    @strawberry.field
    async def incident(self, info: CtxInfo, id: strawberry.ID) -> Incident | None:
        found = await resolvers.incident(info, id)
        return Incident.of(found) if found else None

    @strawberry.field
    async def alert_rules(self, info: CtxInfo) -> list[AlertRule]:
        return [AlertRule.of(r) for r in await resolvers.rules(info)]

    @strawberry.field
    async def silences(self, info: CtxInfo) -> list[Silence]:
        return [Silence.of(s) for s in await resolvers.silences(info)]

    @strawberry.field(description="Admins only.")
    async def webhooks(self, info: CtxInfo) -> list[Webhook]:
        return [Webhook.of(w) for w in await resolvers.webhooks(info)]


@strawberry.type
class AlertMutation:
    @strawberry.mutation
    async def create_alert_rule(self, info: CtxInfo, rule: AlertRuleInput) -> AlertRule:
        return AlertRule.of(await resolvers.create_rule(info, rule.to_data()))

    @strawberry.mutation
    async def update_alert_rule(
        self, info: CtxInfo, id: strawberry.ID, rule: AlertRuleInput
    ) -> AlertRule:
        return AlertRule.of(await resolvers.update_rule(info, id, rule.to_data()))

    @strawberry.mutation
    async def delete_alert_rule(self, info: CtxInfo, id: strawberry.ID) -> bool:
        return await resolvers.delete_rule(info, id)

    @strawberry.mutation
    async def acknowledge_alert(self, info: CtxInfo, id: strawberry.ID) -> Alert:
        return Alert.of(await resolvers.acknowledge(info, id))

    @strawberry.mutation
    async def resolve_alert(self, info: CtxInfo, id: strawberry.ID) -> Alert:
        return Alert.of(await resolvers.resolve(info, id))

    @strawberry.mutation(description="Tell the noise model whether the alert was worth it.")
    async def alert_feedback(
        self, info: CtxInfo, id: strawberry.ID, feedback: AlertFeedback
    ) -> Alert:
        verdict = domain.Feedback(feedback.value)
        return Alert.of(await resolvers.feedback(info, id, verdict))

    @strawberry.mutation
    async def create_silence(self, info: CtxInfo, silence: SilenceInput) -> Silence:
        return Silence.of(await resolvers.create_silence(info, silence.to_data()))

    @strawberry.mutation
    async def expire_silence(self, info: CtxInfo, id: strawberry.ID) -> Silence:
        return Silence.of(await resolvers.expire_silence(info, id))

    @strawberry.mutation(description="Alert events are POSTed here, signed; see `secret`.")
    async def create_webhook(
        self, info: CtxInfo, url: str, min_severity: Severity = Severity.WARNING
    ) -> CreateWebhookPayload:
        hook = await resolvers.create_webhook(info, url, min_severity.value)
        return CreateWebhookPayload(webhook=Webhook.of(hook), secret=hook.secret)

    @strawberry.mutation
    async def delete_webhook(self, info: CtxInfo, id: strawberry.ID) -> bool:
        return await resolvers.delete_webhook(info, id)


@strawberry.type
class AlertSubscription:
    @strawberry.subscription(description="Your tenant's alert events as they happen.")
    async def alerts(
        self, info: CtxInfo, min_severity: Severity = Severity.INFO
    ) -> AsyncGenerator[AlertEvent, None]:
        async for message in resolvers.alert_stream(info, min_severity.value):
            yield AlertEvent.of(message)
