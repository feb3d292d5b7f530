"""Alerts in a server process: scored points through each tenant's alert engine, the
changes written, the events published on the tenant's channel and sent to its webhooks.

The engine (domain/monitoring/alerting) is pure: this service feeds it the tenant's rules,
silences and open alerts, and writes back what it changed. An engine per tenant is kept
and rebuilt when a rule or silence changes here, or after `refresh_s` (changes made on
another replica). Every change of a tenant's alerts runs under that tenant's lock, the
same lock ingestion holds, so an acknowledgement cannot interleave with a batch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from tunelytics import metrics
from tunelytics.domain.monitoring.alerting import (
    Alert,
    AlertEngine,
    Evaluation,
    Feedback,
    NoiseModel,
    SeriesPresence,
    SeriesSample,
)
from tunelytics.pubsub import Broadcaster
from tunelytics.services.monitoring import Sample
from tunelytics.services.webhooks import Delivery, WebhookSender
from tunelytics.storage.alerts import AlertRepository
from tunelytics.storage.monitoring import SeriesRepository

log = logging.getLogger(__name__)


def alerts_channel(tenant_id: str) -> str:
    return f"tenant:{tenant_id}:alerts"


def plain(value: Any) -> Any:
    """A document as JSON-safe values (dates as ISO text), for pub/sub and webhooks."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def revive(doc: dict[str, Any]) -> dict[str, Any]:
    """The inverse of `plain` for the alerting documents: `*_at` fields are dates."""
    out: dict[str, Any] = {}
    for key, value in doc.items():
        if key.endswith("_at") and isinstance(value, str):
            out[key] = datetime.fromisoformat(value)
        else:
            out[key] = value
    return out


def event_message(tenant_id: str, evaluation: Evaluation) -> list[dict[str, Any]]:
    messages = []
    for event in evaluation.events:
        messages.append(
            {
                "tenant_id": tenant_id,
                "kind": event.kind.value,
                "at": event.at.isoformat(),
                "notify": event.notify,
                "repeat": event.repeat,
                "reason": event.reason,
                "alert": plain(event.alert.to_document()),
                "incident": None if event.incident is None else plain(event.incident.to_document()),
            }
        )
    return messages


def sample_of(sample: Sample) -> SeriesSample:
    return SeriesSample(
        series_id=sample.series.id,
        name=sample.series.name,
        labels=dict(sample.series.labels),
        ts=datetime.fromtimestamp(sample.at_ms / 1000, UTC),
        value=sample.value,
        score=sample.score,
    )


class AlertService:
    def __init__(
        self,
        repo: AlertRepository,
        series: SeriesRepository,
        broadcaster: Broadcaster,
        webhooks: WebhookSender,
        locks: dict[str, asyncio.Lock],
        refresh_s: float = 5.0,
    ) -> None:
        self.repo = repo
        self.series = series
        self.broadcaster = broadcaster
        self.webhooks = webhooks
        self.locks = locks
        self.refresh_s = refresh_s
        self.engines: dict[str, tuple[AlertEngine, float]] = {}

    def lock(self, tenant_id: str) -> asyncio.Lock:
        return self.locks.setdefault(tenant_id, asyncio.Lock())

    def invalidate(self, tenant_id: str) -> None:
        self.engines.pop(tenant_id, None)

    async def engine(self, tenant_id: str) -> AlertEngine:
        cached = self.engines.get(tenant_id)
        if cached is not None and time.monotonic() - cached[1] < self.refresh_s:
            return cached[0]
        rules = await self.repo.all_rules(tenant_id)
        silences = await self.repo.all_silences(tenant_id)
        noise = await self.repo.noise_model(tenant_id) or NoiseModel()
        engine = AlertEngine(rules, silences, noise_model=noise, tenant_id=tenant_id)
        self.engines[tenant_id] = (engine, time.monotonic())
        return engine

    # --- from ingestion (AlertSink) ------------------------------------------------------

    async def observe(self, tenant_id: str, samples: list[Sample], now: int) -> None:
        """Called by ingestion under the tenant's lock."""
        engine = await self.engine(tenant_id)
        if not engine.rules:
            return
        evaluation = engine.evaluate(
            [sample_of(s) for s in samples],
            await self.repo.open_alerts(tenant_id),
            await self.repo.open_incidents(tenant_id),
            datetime.fromtimestamp(now / 1000, UTC),
        )
        await self.apply(tenant_id, evaluation)

    async def apply(self, tenant_id: str, evaluation: Evaluation) -> None:
        await self.repo.write(
            tenant_id,
            evaluation.changed_alerts,
            evaluation.changed_incidents,
            evaluation.dropped_alerts,
        )
        if not evaluation.events:
            return
        messages = event_message(tenant_id, evaluation)
        await self.broadcaster.publish_many(alerts_channel(tenant_id), messages)
        metrics.EVENTS_PUBLISHED.labels("alert").inc(len(messages))
        hooks = await self.repo.webhooks(tenant_id)
        for message in messages:
            if not message["notify"]:
                continue
            rank = message["alert"]["severity_rank"]
            for hook in hooks:
                if rank >= hook.min_severity_rank:
                    self.webhooks.enqueue(Delivery(hook.url, hook.secret, message))

    # --- operators -----------------------------------------------------------------------

    async def acknowledge(self, tenant_id: str, alert_id: str, by: str) -> Alert | None:
        return await self._transition(tenant_id, alert_id, by, resolve=False)

    async def resolve(self, tenant_id: str, alert_id: str, by: str) -> Alert | None:
        return await self._transition(tenant_id, alert_id, by, resolve=True)

    async def _transition(
        self, tenant_id: str, alert_id: str, by: str, *, resolve: bool
    ) -> Alert | None:
        async with self.lock(tenant_id):
            alert = await self.repo.alert(tenant_id, alert_id)
            if alert is None:
                return None
            engine = await self.engine(tenant_id)
            incident = await self._incident_of(tenant_id, alert)
            step = engine.resolve if resolve else engine.acknowledge
            await self.apply(tenant_id, step(alert, by, _now(), incident))
            return alert

    async def feedback(
        self, tenant_id: str, alert_id: str, verdict: Feedback, by: str
    ) -> Alert | None:
        async with self.lock(tenant_id):
            alert = await self.repo.alert(tenant_id, alert_id)
            if alert is None:
                return None
            engine = await self.engine(tenant_id)
            engine.record_feedback(alert, verdict, by, _now())
            await self.repo.write(tenant_id, [alert], [], [])
            if engine.noise_model is not None:
                await self.repo.save_noise_model(tenant_id, engine.noise_model)
            return alert

    async def _incident_of(self, tenant_id: str, alert: Alert) -> Any:
        if alert.incident_id is None:
            return None
        return await self.repo.incident(tenant_id, alert.incident_id)

    # --- time passing --------------------------------------------------------------------

    async def check(self, tenant_ids: Sequence[str]) -> None:
        """Absence rules, repeat notifications and duration escalation, for each tenant
        that has rules (a periodic job)."""
        for tenant_id in tenant_ids:
            async with self.lock(tenant_id):
                engine = await self.engine(tenant_id)
                if not engine.rules:
                    continue
                now = _now()
                alerts = await self.repo.open_alerts(tenant_id)
                incidents = await self.repo.open_incidents(tenant_id)
                await self.apply(tenant_id, engine.tick(alerts, incidents, now))
                presences = [
                    SeriesPresence(
                        s.id,
                        s.name,
                        dict(s.labels),
                        datetime.fromtimestamp(s.last_at_ms / 1000, UTC),
                    )
                    for s in await self.series.with_points(tenant_id)
                    if s.last_at_ms is not None
                ]
                alerts = await self.repo.open_alerts(tenant_id)
                incidents = await self.repo.open_incidents(tenant_id)
                await self.apply(tenant_id, engine.check_absence(presences, alerts, incidents, now))


def _now() -> datetime:
    return datetime.now(UTC)
