"""The alert engine: rules + silences + inhibition over scored points, statelessly.

The engine holds only configuration (a tenant's rules, silences, inhibition rules, noise
model) and caches derived from it; alert and incident state comes in with each call and
the changes go out in an Evaluation. A server loads the tenant's open alerts and
incidents, calls the engine, writes back what changed and publishes the events. The
given alerts and incidents are updated in place; the Evaluation lists those that changed.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from tunelytics.domain.monitoring.alerting.alerts import (
    Alert,
    AlertEvent,
    Evaluation,
    Incident,
    IncidentMember,
    fingerprint,
    group_key,
    priority,
    tier_rank,
)
from tunelytics.domain.monitoring.alerting.model import (
    AlertState,
    AlertStateError,
    EventKind,
    Feedback,
    IncidentState,
    RuleKind,
    SeriesForecast,
    SeriesPresence,
    SeriesSample,
    Severity,
    utc,
)
from tunelytics.domain.monitoring.alerting.noise import NoiseModel, alert_features
from tunelytics.domain.monitoring.alerting.rules import Rule
from tunelytics.domain.monitoring.alerting.silences import (
    DEFAULT_INHIBITIONS,
    InhibitRule,
    Silence,
)

MAX_INCIDENT_ALERT_IDS = 1000
_CACHE_LIMIT = 200_000
_RESERVED = ("alertname", "__name__")


@dataclass(slots=True)
class _Pending:
    kind: EventKind
    alert: Alert  # live object
    snapshot: Alert | None
    incident: Incident | None
    repeat: bool = False
    optional: bool = False  # a repeat: dropped, not sent muted, when it would not notify
    reason: str = ""


class _Run:
    """The state of one engine call."""

    def __init__(
        self,
        tenant_id: str | None,
        open_alerts: Iterable[Alert],
        open_incidents: Iterable[Incident],
        now: datetime,
    ) -> None:
        self.now = utc(now)
        self.alerts: dict[tuple[str, str], Alert] = {}
        self.by_id: dict[str, Alert] = {}
        # Another tenant's state never takes part, whatever the caller passes.
        for alert in open_alerts:
            if alert.is_open and tenant_id in (None, alert.tenant_id):
                self.alerts[(alert.rule_id, alert.series_id)] = alert
                self.by_id[alert.id] = alert
        self.incidents: dict[str, Incident] = {}
        self.by_group: dict[str, Incident] = {}
        for incident in open_incidents:
            if tenant_id not in (None, incident.tenant_id):
                continue
            self.incidents[incident.id] = incident
            known = self.by_group.get(incident.group_key)
            if known is None or _newer(incident, known):
                self.by_group[incident.group_key] = incident
        self.changed_alerts: dict[str, Alert] = {}
        self.changed_incidents: dict[str, Incident] = {}
        self.created: set[str] = set()
        self.dropped: list[Alert] = []
        self.pending: list[_Pending] = []
        self.repeat_queued: set[str] = set()
        self.counts: dict[str, int] = {}  # incident id -> series count, while unchanged
        self.match_labels: dict[str, tuple[Severity, dict[str, str]]] = {}
        self.absence_open = any(a.kind is RuleKind.ABSENCE for a in self.alerts.values())

    def touch(self, alert: Alert) -> None:
        alert.updated_at = self.now
        self.changed_alerts[alert.id] = alert

    def touch_incident(self, incident: Incident) -> None:
        incident.updated_at = self.now
        self.changed_incidents[incident.id] = incident

    def emit(
        self,
        kind: EventKind,
        alert: Alert,
        repeat: bool = False,
        optional: bool = False,
        reason: str = "",
    ) -> None:
        # Optional events (repeats) are usually dropped: snapshot them only if kept.
        if kind in (EventKind.FIRED, EventKind.ESCALATED):
            self.repeat_queued.add(alert.id)  # notified in this call: no repeat on top
        snap, incident = (None, None) if optional else self.snapshot(alert)
        self.pending.append(_Pending(kind, alert, snap, incident, repeat, optional, reason))

    def series_count(self, incident: Incident) -> int:
        count = self.counts.get(incident.id)
        if count is None:
            count = self.counts[incident.id] = incident.series_count
        return count

    def labels_of(self, alert: Alert) -> dict[str, str]:
        """The alert's labels plus severity (what silences and inhibition match)."""
        known = self.match_labels.get(alert.id)
        if known is None or known[0] is not alert.severity:
            known = self.match_labels[alert.id] = (alert.severity, alert.match_labels())
        return known[1]

    def snapshot(self, alert: Alert) -> tuple[Alert, Incident | None]:
        incident = self.incidents.get(alert.incident_id) if alert.incident_id else None
        if incident is not None:
            incident = replace(
                incident, members=dict(incident.members), alert_ids=list(incident.alert_ids)
            )
        return copy.copy(alert), incident


def _newer(a: Incident, b: Incident) -> bool:
    if a.is_open != b.is_open:
        return a.is_open
    return a.started_at > b.started_at


class AlertEngine:
    """Evaluates one tenant's rules. Build it when the tenant's rules or silences change
    (it precompiles matchers, indexes rules by series name and caches which rules match
    which series); reuse it across calls. Series ids must identify (name, labels).
    All rules belong to one tenant (tenant_id, or the rules' own); alerts, incidents
    and silences of any other tenant are ignored."""

    def __init__(
        self,
        rules: Iterable[Rule],
        silences: Iterable[Silence] = (),
        inhibitions: Iterable[InhibitRule] = DEFAULT_INHIBITIONS,
        noise_model: NoiseModel | None = None,
        tenant_id: str | None = None,
    ) -> None:
        rules = list(rules)
        tenants = {r.tenant_id for r in rules} | ({tenant_id} if tenant_id else set())
        if len(tenants) > 1:
            raise ValueError(f"one engine per tenant (rules of {sorted(tenants)})")
        self.tenant_id = tenant_id or next(iter(tenants), None)
        self.rules = {r.id: r for r in rules if r.enabled}
        self.silences = [s for s in silences if self.tenant_id in (None, s.tenant_id)]
        self.inhibitions = tuple(inhibitions)
        self.noise_model = noise_model
        self._order = {rule_id: i for i, rule_id in enumerate(self.rules)}
        self._by_name: dict[str | None, list[Rule]] = {}
        for rule in self.rules.values():
            self._by_name.setdefault(rule.selector.name, []).append(rule)
        self._matched: dict[str, tuple[tuple[Rule, ...], ...]] = {}
        self._identity: dict[tuple[str, str], tuple[str, dict[str, str]]] = {}
        self._sources: dict[tuple[str, Severity], tuple[tuple[int, tuple[str, ...]], ...]] = {}

    # -- public API -----------------------------------------------------------------

    def evaluate(
        self,
        samples: Sequence[SeriesSample],
        open_alerts: Iterable[Alert],
        open_incidents: Iterable[Incident],
        now: datetime,
    ) -> Evaluation:
        """Run a batch of scored points (in time order per series) through the rules.

        open_alerts: the tenant's alerts that are not resolved; open_incidents: its
        unresolved incidents, plus any resolved within the rules' group_window if you
        want a quick relapse to reopen its incident rather than start a new one."""
        run = _Run(self.tenant_id, open_alerts, open_incidents, now)
        matched, rules_for, open_now = self._matched, self._rules_for, run.alerts
        for sample in samples:
            series_id = sample.series_id
            found = matched.get(series_id) or rules_for(series_id, sample.name, sample.labels)
            point_rules, absence_rules, _ = found
            if not point_rules and not absence_rules:
                continue
            ts = sample.ts if sample.ts.tzinfo is UTC else utc(sample.ts)
            for rule in point_rules:
                cond = rule.breached(sample.value, sample.score)
                # The common case: nothing wrong and nothing open.
                if cond is None or (not cond and (rule.id, series_id) not in open_now):
                    continue
                self._observe(
                    run,
                    rule,
                    sample.series_id,
                    sample.name,
                    sample.labels,
                    ts,
                    sample.value,
                    sample.score,
                    cond,
                    rule.strength(sample.value, sample.score) if cond else 0.0,
                )
            if run.absence_open:
                for rule in absence_rules:
                    alert = run.alerts.get((rule.id, sample.series_id))
                    if alert is not None:  # data is back: an absence ends at its first point
                        self._clear(run, alert, ts)
        return self._finish(run)

    def check_absence(
        self,
        presence: Iterable[SeriesPresence],
        open_alerts: Iterable[Alert],
        open_incidents: Iterable[Incident],
        now: datetime,
    ) -> Evaluation:
        """Absence rules against when each known series last had a point. Call it
        periodically (e.g. every 15 s) with the tenant's series; an absence alert starts
        at last_seen + absent_for and fires `for` later; it resolves when the series
        has a point again (here, or in evaluate)."""
        run = _Run(self.tenant_id, open_alerts, open_incidents, now)
        for p in presence:
            last_seen = utc(p.last_seen)
            for rule in self._rules_for(p.series_id, p.name, p.labels)[1]:
                elapsed = run.now - last_seen
                if elapsed >= rule.absent_for:
                    strength = 1.0 - rule.absent_for / elapsed if elapsed else 0.0
                    self._observe(
                        run, rule, p.series_id, p.name, p.labels, run.now, None, None, True,
                        strength, since=last_seen + rule.absent_for,
                    )  # fmt: skip
                else:
                    alert = run.alerts.get((rule.id, p.series_id))
                    if alert is not None:
                        self._clear(run, alert, last_seen)
        return self._finish(run)

    def check_forecasts(
        self,
        forecasts: Iterable[SeriesForecast],
        open_alerts: Iterable[Alert],
        open_incidents: Iterable[Incident],
        now: datetime,
    ) -> Evaluation:
        """Forecast rules against a fresh forecast of each series (see
        `forecast_rules` for what to compute). An alert's event time is the forecast's
        origin (its last observation); its annotations say when the forecast crosses
        and at what value. A forecast that no longer crosses counts as a false point."""
        run = _Run(self.tenant_id, open_alerts, open_incidents, now)
        for f in forecasts:
            origin = utc(f.origin)
            for rule in self._rules_for(f.series_id, f.name, f.labels)[2]:
                if rule.forecast_on != "mean" and rule.forecast_level not in f.bounds:
                    continue  # not computed for this rule: says nothing
                crossing = rule.crossing(f)
                if crossing is None:
                    self._observe(
                        run, rule, f.series_id, f.name, f.labels, origin, None, None, False, 0.0
                    )
                    continue
                notes = {
                    "forecast_crossing_at": utc(crossing.at).isoformat(),
                    "forecast_value": f"{crossing.value:.6g}",
                    "forecast_mean": f"{crossing.mean:.6g}",
                    "forecast_on": _compared(rule),
                    "forecast_origin": origin.isoformat(),
                    "forecast_model": f.model,
                    "threshold": f"{rule.op} {rule.threshold:g}",
                }
                self._observe(
                    run, rule, f.series_id, f.name, f.labels, origin, crossing.value, None,
                    True, rule.lead_strength(f, crossing), annotations=notes,
                )  # fmt: skip
        return self._finish(run)

    def forecast_rules(self, series_id: str, name: str, labels: dict[str, str]) -> list[Rule]:
        """The forecast rules matching a series: the service forecasts it at the longest
        of their horizons, with every interval level they use."""
        return list(self._rules_for(series_id, name, labels)[2])

    def tick(
        self, open_alerts: Iterable[Alert], open_incidents: Iterable[Incident], now: datetime
    ) -> Evaluation:
        """Time passing without points: re-notify firing alerts whose repeat_interval
        elapsed (or whose silence ended) and refresh priorities (duration counts in
        them); resolve alerts whose rule was deleted or disabled (Alertmanager resolves
        alerts that stop arriving); drop incident members that are no longer open. Pass
        all the tenant's open alerts. Call it periodically (e.g. every 30 s)."""
        run = _Run(self.tenant_id, open_alerts, open_incidents, now)
        for alert in list(run.alerts.values()):
            rule = self.rules.get(alert.rule_id)
            if rule is None:  # deleted or disabled: nothing will ever clear it
                if alert.state is AlertState.PENDING:
                    self._clear(run, alert, run.now)
                else:
                    self._resolve(run, alert, run.now, None, reason="rule removed")
            elif alert.is_active:
                self._update_active(run, rule, alert, run.now, None, None)
        # Members that are no longer open (resolved without their incident at hand) leave;
        # tick is given all open alerts, so anything else is stale.
        for incident in run.incidents.values():
            stale = [m for m in incident.members if m not in run.by_id]
            if not stale or not incident.is_open:
                continue
            for alert_id in stale:
                del incident.members[alert_id]
            run.counts.pop(incident.id, None)
            if incident.members:
                _summarize(incident)
            else:
                incident.state = IncidentState.RESOLVED
                incident.resolved_at = run.now
            run.touch_incident(incident)
        return self._finish(run)

    def acknowledge(
        self, alert: Alert, by: str, now: datetime, incident: Incident | None = None
    ) -> Evaluation:
        """Firing -> acknowledged: no more repeat notifications; still resolves by
        itself and still escalates. Acknowledging an acknowledged alert changes nothing."""
        self._own(alert)
        if alert.state is AlertState.ACKNOWLEDGED:
            return Evaluation()
        if alert.state is not AlertState.FIRING:
            raise AlertStateError(f"only a firing alert can be acknowledged (it is {alert.state})")
        run = _Run(self.tenant_id, [alert], [] if incident is None else [incident], now)
        alert.state = AlertState.ACKNOWLEDGED
        alert.acknowledged_at = run.now
        alert.acknowledged_by = by
        run.touch(alert)
        run.emit(EventKind.ACKNOWLEDGED, alert)
        return self._finish(run)

    def resolve(
        self, alert: Alert, by: str, now: datetime, incident: Incident | None = None
    ) -> Evaluation:
        """Resolve by hand. Pass its incident to update it (else the next tick does).
        If the condition still holds, the next point opens a new alert with the same
        fingerprint."""
        self._own(alert)
        if not alert.is_open:
            raise AlertStateError("the alert is already resolved")
        run = _Run(self.tenant_id, [alert], [] if incident is None else [incident], now)
        self._resolve(run, alert, run.now, by)
        return self._finish(run)

    def record_feedback(
        self, alert: Alert, feedback: Feedback | str, by: str, now: datetime
    ) -> Alert:
        """An operator calls the alert useful or noise; the noise model (if any) learns
        from the alert's features as they were when it fired. The latest feedback wins
        on the alert; changing it teaches the model the new answer too."""
        self._own(alert)
        verdict = Feedback(feedback)
        if alert.feedback is not verdict and self.noise_model is not None and alert.features:
            self.noise_model.learn_one(alert.features, verdict is Feedback.NOISE)
        alert.feedback = verdict
        alert.feedback_by = by
        alert.feedback_at = alert.updated_at = utc(now)
        return alert

    def matching_rules(self, series_id: str, name: str, labels: dict[str, str]) -> list[Rule]:
        return [rule for found in self._rules_for(series_id, name, labels) for rule in found]

    # -- internals ------------------------------------------------------------------

    def _own(self, alert: Alert) -> None:
        if self.tenant_id is not None and alert.tenant_id != self.tenant_id:
            raise AlertStateError("the alert belongs to another tenant")

    def _rules_for(
        self, series_id: str, name: str, labels: dict[str, str]
    ) -> tuple[tuple[Rule, ...], ...]:
        """(point rules: anomaly and threshold, absence rules, forecast rules)."""
        found = self._matched.get(series_id)
        if found is None:
            candidates = [*self._by_name.get(name, ()), *self._by_name.get(None, ())]
            with_name = {**labels, "__name__": name}
            hits = [r for r in candidates if r.selector.matches(name, with_name)]
            hits.sort(key=lambda r: self._order[r.id])  # the rules' order, whatever the index
            found = (
                tuple(r for r in hits if r.kind in (RuleKind.ANOMALY, RuleKind.THRESHOLD)),
                tuple(r for r in hits if r.kind is RuleKind.ABSENCE),
                tuple(r for r in hits if r.kind is RuleKind.FORECAST),
            )
            if len(self._matched) >= _CACHE_LIMIT:
                self._matched.clear()
            self._matched[series_id] = found
        return found

    def _alert_identity(
        self, rule: Rule, series_id: str, name: str, labels: dict[str, str]
    ) -> tuple[str, dict[str, str]]:
        key = (rule.id, series_id)
        found = self._identity.get(key)
        if found is None:
            merged = {k: v for k, v in labels.items() if k not in _RESERVED}
            merged.update((k, v) for k, v in rule.labels.items() if k not in _RESERVED)
            merged["alertname"] = rule.name
            merged["__name__"] = name
            found = (fingerprint(rule.id, series_id, merged), merged)
            if len(self._identity) >= _CACHE_LIMIT:
                self._identity.clear()
            self._identity[key] = found
        return found

    def _observe(
        self,
        run: _Run,
        rule: Rule,
        series_id: str,
        name: str,
        labels: dict[str, str],
        ts: datetime,
        value: float | None,
        score: float | None,
        cond: bool,
        strength: float,
        since: datetime | None = None,
        annotations: dict[str, str] | None = None,
    ) -> None:
        key = (rule.id, series_id)
        alert = run.alerts.get(key)
        if not cond:
            if alert is None:
                return
            alert.clear_points += 1
            alert.last_value, alert.last_score = value, score
            last_true = alert.last_true_at or alert.started_at
            if alert.state is AlertState.PENDING:
                self._clear(run, alert, ts)
            elif alert.clear_points >= rule.resolve_points and ts - last_true >= rule.resolve_after:
                self._resolve(run, alert, ts, None)
            else:
                run.touch(alert)
            return
        if alert is None:
            alert = self._new_alert(run, rule, series_id, name, labels, since or ts, ts)
        alert.last_true_at = ts
        alert.clear_points = 0
        if annotations is not None:
            alert.annotations = annotations
        alert.last_value, alert.last_score = value, score
        if value is not None and (
            alert.peak_value is None or _worse(rule, value, alert.peak_value)
        ):
            alert.peak_value = value
        if score is not None and (alert.peak_score is None or score > alert.peak_score):
            alert.peak_score = score
        alert.strength = max(alert.strength, strength)
        run.touch(alert)
        if alert.state is AlertState.PENDING:
            if ts - alert.started_at >= rule.for_:
                self._fire(run, rule, alert, ts)
        else:
            self._update_active(run, rule, alert, ts, value, score)

    def _new_alert(
        self,
        run: _Run,
        rule: Rule,
        series_id: str,
        name: str,
        labels: dict[str, str],
        started: datetime,
        seen: datetime,
    ) -> Alert:
        fp, alert_labels = self._alert_identity(rule, series_id, name, labels)
        alert = Alert(
            # When it was first seen, not when it started: an absence resolved by hand
            # while the series stays quiet starts again at the same time, as a new alert.
            id=f"{fp}-{int(seen.timestamp() * 1000)}",
            tenant_id=rule.tenant_id,
            fingerprint=fp,
            rule_id=rule.id,
            rule_name=rule.name,
            kind=rule.kind,
            series_id=series_id,
            series_name=name,
            labels=alert_labels,
            severity=rule.severity,
            state=AlertState.PENDING,
            started_at=started,
            updated_at=run.now,
            business_weight=_weight(rule, labels),
            summary=rule.summary or f"{rule.name} on {name}",
        )
        run.alerts[(rule.id, series_id)] = alert
        run.by_id[alert.id] = alert
        run.created.add(alert.id)
        return alert

    def _fire(self, run: _Run, rule: Rule, alert: Alert, ts: datetime) -> None:
        alert.state = AlertState.FIRING
        alert.fired_at = ts
        if rule.escalates(alert.last_value, alert.last_score):
            assert rule.escalate_to is not None
            alert.severity = max(alert.severity, rule.escalate_to)
        incident, old_peak, severity, old_count = self._join_incident(run, rule, alert, ts)
        self._reprioritize(run, alert, ts)
        alert.escalation_rank = _rank(alert)
        alert.features = alert_features(
            rule_id=rule.id,
            kind=rule.kind,
            severity=alert.severity,
            series_id=alert.series_id,
            series_name=alert.series_name,
            labels=alert.labels,
            peak_score=alert.peak_score,
            strength=alert.strength,
            pending_s=(ts - alert.started_at).total_seconds(),
            series_count=run.series_count(incident),
            at=ts,
        )
        if self.noise_model is not None:
            alert.noise_probability = self.noise_model.predict_proba_one(alert.features)
        run.emit(EventKind.FIRED, alert)
        count = run.series_count(incident)
        if count > old_count > 0:
            for other_id in incident.members:  # breadth raises every member's priority
                other = run.by_id.get(other_id)
                if other is not None and other is not alert:
                    self._reprioritize(run, other, ts)
                    run.touch(other)
        # A new member escalates its incident when it raises the incident's severity or
        # the incident reaches 2, 4, 8, ... series for the first time.
        widened = count > max(old_peak, 1) and count & (count - 1) == 0
        if widened or (len(incident.members) > 1 and incident.severity > severity):
            incident.escalation_rank += 1
            run.emit(EventKind.ESCALATED, alert, reason="incident")

    def _update_active(
        self,
        run: _Run,
        rule: Rule,
        alert: Alert,
        ts: datetime,
        value: float | None,
        score: float | None,
    ) -> None:
        reason = ""
        if rule.escalates(value, score):
            assert rule.escalate_to is not None
            if alert.severity < rule.escalate_to:
                alert.severity = rule.escalate_to
                reason = "severity"
        before = alert.priority
        self._reprioritize(run, alert, ts)
        if alert.priority != before:
            run.touch(alert)
        rank = _rank(alert)
        if rank > alert.escalation_rank:
            alert.escalation_rank = rank
            run.touch(alert)
            run.emit(EventKind.ESCALATED, alert, reason=reason or "priority")
        elif (
            alert.state is AlertState.FIRING
            and alert.id not in run.repeat_queued
            and (
                alert.last_notified_at is None
                or run.now - alert.last_notified_at >= rule.repeat_interval
            )
        ):
            run.emit(
                EventKind.FIRED, alert, repeat=alert.last_notified_at is not None, optional=True
            )

    def _reprioritize(self, run: _Run, alert: Alert, ts: datetime) -> None:
        incident = run.incidents.get(alert.incident_id) if alert.incident_id else None
        count = run.series_count(incident) if incident is not None else 1
        firing_s = (ts - alert.fired_at).total_seconds() if alert.fired_at else 0.0
        alert.priority = priority(
            alert.severity, alert.strength, firing_s, count, alert.business_weight
        )
        if incident is not None and alert.id in incident.members:
            member = incident.members[alert.id]
            if member.priority != alert.priority or member.severity != alert.severity:
                old = member.priority
                member.priority, member.severity = alert.priority, alert.severity
                # Incremental max; a full pass only when the maximum itself fell.
                incident.severity = max(incident.severity, alert.severity)
                if alert.priority >= incident.priority:
                    incident.priority = alert.priority
                elif old >= incident.priority:
                    _summarize(incident)
                run.touch_incident(incident)

    def _join_incident(
        self, run: _Run, rule: Rule, alert: Alert, ts: datetime
    ) -> tuple[Incident, int, Severity, int]:
        """Put a newly firing alert into its incident; returns the incident and its peak
        series count, severity and series count before."""
        key, values = group_key(rule.group_by, alert.labels)
        incident = run.by_group.get(key)
        if (
            incident is not None
            and not incident.is_open
            and (incident.resolved_at is None or ts - incident.resolved_at > rule.group_window)
        ):
            incident = None
        if incident is None:
            incident = Incident(
                id=f"inc-{key}-{int(ts.timestamp() * 1000)}",
                tenant_id=alert.tenant_id,
                group_key=key,
                group_labels=values,
                state=IncidentState.OPEN,
                severity=alert.severity,
                priority=0.0,
                started_at=ts,
                updated_at=run.now,
            )
            run.incidents[incident.id] = incident
            run.by_group[key] = incident
        elif not incident.is_open:  # a relapse within group_window reopens it
            incident.state = IncidentState.OPEN
            incident.resolved_at = None
        old_peak, severity = incident.peak_series_count, incident.severity
        old_count = run.series_count(incident)
        if len(incident.alert_ids) < MAX_INCIDENT_ALERT_IDS:
            incident.alert_ids.append(alert.id)
        incident.members[alert.id] = IncidentMember(alert.series_id, alert.severity, 0.0)
        run.counts.pop(incident.id, None)
        incident.peak_series_count = max(incident.peak_series_count, run.series_count(incident))
        alert.incident_id = incident.id
        if old_count == 0:  # new or reopened: the first member sets the pace
            incident.severity, incident.priority = alert.severity, 0.0
        incident.severity = max(incident.severity, alert.severity)
        run.touch_incident(incident)
        return incident, old_peak, severity, old_count

    def _clear(self, run: _Run, alert: Alert, ts: datetime) -> None:
        """The condition ended at once (pending alert, or data back for an absence)."""
        if alert.state is AlertState.PENDING:
            del run.alerts[(alert.rule_id, alert.series_id)]
            run.by_id.pop(alert.id, None)
            run.changed_alerts.pop(alert.id, None)
            if alert.id not in run.created:
                run.dropped.append(alert)
        else:
            self._resolve(run, alert, ts, None)

    def _resolve(
        self, run: _Run, alert: Alert, ts: datetime, by: str | None, reason: str = ""
    ) -> None:
        alert.state = AlertState.RESOLVED
        alert.resolved_at = ts
        alert.resolved_by = by
        run.alerts.pop((alert.rule_id, alert.series_id), None)
        run.touch(alert)
        incident = run.incidents.get(alert.incident_id) if alert.incident_id else None
        if incident is not None and incident.members.pop(alert.id, None) is not None:
            run.counts.pop(incident.id, None)
            if not incident.members:
                incident.state = IncidentState.RESOLVED
                incident.resolved_at = ts
            else:
                _summarize(incident)
            run.touch_incident(incident)
        run.emit(EventKind.RESOLVED, alert, reason=reason)

    def _finish(self, run: _Run) -> Evaluation:
        active_silences = [s for s in self.silences if s.is_active(run.now)]
        targeted = any(
            all(m.matches(run.labels_of(p.alert)) for m in rule.target_matchers)
            for p in run.pending
            for rule in self.inhibitions
        )
        sources = self._inhibition_sources(run) if targeted else [{} for _ in self.inhibitions]
        out = Evaluation(dropped_alerts=run.dropped)
        for p in run.pending:
            alert = p.alert
            labels = run.labels_of(alert)
            silenced = [s.id for s in active_silences if s.matches(labels)]
            inhibited = self._inhibited(alert, labels, sources)
            if p.kind is EventKind.RESOLVED:
                notify = alert.last_notified_at is not None and not silenced
            elif p.kind is EventKind.ACKNOWLEDGED:
                notify = not silenced
            else:
                notify = not silenced and not inhibited
            if p.optional and (not notify or not alert.is_active):
                continue
            alert.silenced_by, alert.inhibited = silenced, inhibited
            if notify and p.kind in (EventKind.FIRED, EventKind.ESCALATED):
                alert.last_notified_at = run.now
                alert.notifications += 1
            run.changed_alerts[alert.id] = alert
            snap, incident = (p.snapshot, p.incident) if p.snapshot else run.snapshot(alert)
            snap.silenced_by, snap.inhibited = silenced, inhibited
            snap.last_notified_at, snap.notifications = alert.last_notified_at, alert.notifications
            out.events.append(
                AlertEvent(p.kind, snap, incident, run.now, notify, p.repeat, p.reason)
            )
        out.changed_alerts = list(run.changed_alerts.values())
        out.changed_incidents = list(run.changed_incidents.values())
        return out

    def _inhibition_sources(self, run: _Run) -> list[dict[tuple[str, ...], set[str]]]:
        """Per inhibition rule: equal-label values -> ids of active alerts matching its
        source matchers."""
        out: list[dict[tuple[str, ...], set[str]]] = [{} for _ in self.inhibitions]
        cache = self._sources
        for alert in run.alerts.values():
            if not alert.is_active:
                continue
            # Open alerts come back call after call: remember what each one is a source of.
            key = (alert.id, alert.severity)
            found = cache.get(key)
            if found is None:
                labels = run.labels_of(alert)
                found = tuple(
                    (i, tuple(labels.get(k, "") for k in rule.equal))
                    for i, rule in enumerate(self.inhibitions)
                    if all(m.matches(labels) for m in rule.source_matchers)
                )
                if len(cache) >= _CACHE_LIMIT:
                    cache.clear()
                cache[key] = found
            for i, values in found:
                out[i].setdefault(values, set()).add(alert.id)
        return out

    def _inhibited(
        self, alert: Alert, labels: dict[str, str], sources: list[dict[tuple[str, ...], set[str]]]
    ) -> bool:
        for rule, by_values in zip(self.inhibitions, sources, strict=True):
            if not by_values or not all(m.matches(labels) for m in rule.target_matchers):
                continue
            ids = by_values.get(tuple(labels.get(k, "") for k in rule.equal))
            if ids and (len(ids) > 1 or alert.id not in ids):
                return True
        return False


def _summarize(incident: Incident) -> None:
    if incident.members:
        incident.severity = max(m.severity for m in incident.members.values())
        incident.priority = max(m.priority for m in incident.members.values())


def _rank(alert: Alert) -> int:
    """What ESCALATED tracks for an alert: its severity and the priority tier its own
    strength and weight give (not duration, which rises predictably, nor breadth, which
    escalates the incident instead)."""
    p = priority(alert.severity, alert.strength, 0.0, 1, alert.business_weight)
    return int(alert.severity) * 4 + tier_rank(p)


def _worse(rule: Rule, value: float, peak: float) -> bool:
    below = rule.kind in (RuleKind.THRESHOLD, RuleKind.FORECAST) and rule.op in ("<", "<=")
    return value < peak if below else value > peak


def _compared(rule: Rule) -> str:
    if rule.forecast_on == "mean":
        return "point forecast"
    side = "upper" if rule.op in (">", ">=") else "lower"
    return f"{side} bound of the {rule.forecast_level:.0%} interval"


def _weight(rule: Rule, labels: dict[str, str]) -> float:
    raw = labels.get(rule.weight_label)
    if raw is not None:
        try:
            w = float(raw)
        except ValueError:
            w = math.nan
        if math.isfinite(w) and w > 0:
            return min(max(w, 0.01), 100.0)
    return rule.business_weight if rule.business_weight is not None else 1.0
