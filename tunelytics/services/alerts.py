"""Alerts in a server process: scored points through each tenant's alert engine, the
changes written, the events published on the tenant's channel and sent to its webhooks.

The engine (domain/monitoring/alerting) is pure: this service feeds it the tenant's rules,
silences and open alerts, and writes back what it changed. An engine per tenant is kept
and rebuilt when a rule or silence changes here, or after `refresh_s` (changes made on
another replica). Every change of a tenant's alerts runs under that tenant's lock, the
same lock ingestion holds, so an acknowledgement cannot interleave with a batch.

Forecast rules are evaluated per matching series after ingestion (in the background, one
pass per tenant at a time) and by the periodic check: a series is forecast again once it
has new points and its rules' `every` has passed (or its rules changed). Forecasting
runs in a worker thread and outside the tenant's lock, so ingestion never waits for it;
only the engine call and the write-back take the lock.
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
    Rule,
    RuleKind,
    SeriesForecast,
    SeriesPresence,
    SeriesSample,
)
from tunelytics.domain.monitoring.alerting.forecasting import (
    BusinessTarget,
    business_targets,
    forecast_for_rules,
)
from tunelytics.domain.predict.errors import NotEnoughData
from tunelytics.domain.predict.series import RegularSeries
from tunelytics.pubsub import Broadcaster
from tunelytics.services.forecasting import listen_series, series_tracks
from tunelytics.services.monitoring import Sample
from tunelytics.services.webhooks import Delivery, WebhookSender
from tunelytics.storage.alerts import AlertRepository
from tunelytics.storage.monitoring import SeriesRepository, monitoring_store
from tunelytics.storage.predictions import ListenSeriesRepository

log = logging.getLogger(__name__)
# Points a forecast rule reads per series (the newest, within the rule's history).
MAX_FORECAST_POINTS = 20_000


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
        self.points = monitoring_store(repo.db).points
        # (tenant, series) -> (monotonic time, last point ms, rules) of its last forecast
        self.forecasted: dict[tuple[str, str], tuple[float, int, tuple[Any, ...]]] = {}
        self.forecasting: dict[str, asyncio.Task[None]] = {}
        self.forecast_again: set[str] = set()  # asked for while a pass was running
        # (tenant, series) -> the newest point this process has seen: stored series
        # summaries are written lazily (on checkpoints), points at once.
        self.latest: dict[tuple[str, str], int] = {}

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
        if _forecast_rules(engine):
            for sample in samples:
                key = (tenant_id, sample.series.id)
                if sample.at_ms > self.latest.get(key, -1):
                    self.latest[key] = sample.at_ms
            self.schedule_forecasts(tenant_id)

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

    # --- forecast rules -------------------------------------------------------------------

    def schedule_forecasts(self, tenant_id: str) -> None:
        """A forecast pass for the tenant in the background; while one is running, one
        more after it (so points that arrived during a pass are not left for the
        periodic check)."""
        task = self.forecasting.get(tenant_id)
        if task is None or task.done():
            self.forecasting[tenant_id] = asyncio.create_task(self._forecast_pass(tenant_id))
        else:
            self.forecast_again.add(tenant_id)

    async def _forecast_pass(self, tenant_id: str) -> None:
        while True:
            self.forecast_again.discard(tenant_id)
            try:
                await self.check_forecasts(tenant_id)
            except Exception:  # a background pass must not die silently; the next retries
                log.exception("forecast rules of tenant %s failed", tenant_id)
            if tenant_id not in self.forecast_again:
                return

    async def check_forecasts(self, tenant_id: str) -> None:
        """Forecast every due series matching the tenant's forecast rules, then run the
        forecasts through the engine (alerts fire, update or resolve) and publish."""
        engine = await self.engine(tenant_id)
        if not _forecast_rules(engine):
            return
        forecasts: list[SeriesForecast] = []
        for series in await self.series.with_points(tenant_id):
            labels = dict(series.labels)
            rules = engine.forecast_rules(series.id, series.name, labels)
            seen = [series.last_at_ms, self.latest.get((tenant_id, series.id))]
            last_ms = max((t for t in seen if t is not None), default=None)
            if not rules or last_ms is None or not self._due(tenant_id, series.id, last_ms, rules):
                continue
            history_ms = int(max(r.history for r in rules).total_seconds() * 1000)
            points = await self.points.between(
                tenant_id, series.id, last_ms - history_ms, last_ms + 1, MAX_FORECAST_POINTS
            )
            times = [datetime.fromtimestamp(p.at_ms / 1000, UTC) for p in points]
            values = [p.value for p in points]
            found = await self._forecast(
                tenant_id, rules, series.id, series.name, labels, last_ms, times, values
            )
            if found is not None:
                forecasts.append(found)
        for target in business_targets(engine.rules.values()):
            rules = engine.forecast_rules(target.series_id, target.name, target.labels)
            # Checked before reading: a pass runs after every ingested batch, and counting
            # weeks of listens each time would be wasted until `every` has passed.
            if not rules or self._waiting(tenant_id, target.series_id, rules):
                continue
            counted = await self._business_series(tenant_id, target)
            last_ms = (
                -1 if counted is None else int(counted.at(len(counted) - 1).timestamp() * 1000)
            )
            due = counted is not None and self._due(tenant_id, target.series_id, last_ms, rules)
            # Tried now, whatever comes of it (no listens, no new bucket): again after `every`.
            self.forecasted[(tenant_id, target.series_id)] = (
                time.monotonic(),
                last_ms,
                _signature(rules),
            )
            if counted is None or not due:
                continue
            times = [counted.at(i) for i in range(len(counted))]
            found = await self._forecast(
                tenant_id,
                rules,
                target.series_id,
                target.name,
                target.labels,
                last_ms,
                times,
                counted.values.tolist(),
            )
            if found is not None:
                forecasts.append(found)
        if not forecasts:
            return
        async with self.lock(tenant_id):
            engine = await self.engine(tenant_id)
            evaluation = engine.check_forecasts(
                forecasts,
                await self.repo.open_alerts(tenant_id),
                await self.repo.open_incidents(tenant_id),
                _now(),
            )
            await self.apply(tenant_id, evaluation)

    async def _forecast(
        self,
        tenant_id: str,
        rules: list[Rule],
        series_id: str,
        name: str,
        labels: dict[str, str],
        last_ms: int,
        times: list[datetime],
        values: list[float],
    ) -> SeriesForecast | None:
        # CPU-bound (a backtest of several models): off the event loop.
        found = await asyncio.to_thread(
            forecast_for_rules, rules, series_id, name, labels, times, values
        )
        if found is not None:  # None: too little history; tried again with the next points
            self.forecasted[(tenant_id, series_id)] = (time.monotonic(), last_ms, _signature(rules))
        return found

    async def _business_series(
        self, tenant_id: str, target: BusinessTarget
    ) -> RegularSeries | None:
        """The derived series a rule names, from the tenant's listens; None without any."""
        repo = ListenSeriesRepository(self.repo.db)
        try:
            tracks = await series_tracks(repo, tenant_id, target.ref)
            return await listen_series(repo, tenant_id, target.ref, tracks)
        except NotEnoughData:
            return None

    def _waiting(self, tenant_id: str, series_id: str, rules: list[Rule]) -> bool:
        """Forecast (or tried) for these rules less than `every` ago."""
        last = self.forecasted.get((tenant_id, series_id))
        if last is None or last[2] != _signature(rules):
            return False
        return time.monotonic() - last[0] < min(r.every for r in rules).total_seconds()

    def _due(self, tenant_id: str, series_id: str, last_ms: int, rules: list[Rule]) -> bool:
        last = self.forecasted.get((tenant_id, series_id))
        if last is None or last[2] != _signature(rules):
            return True
        every = min(r.every for r in rules).total_seconds()
        return last[1] != last_ms and time.monotonic() - last[0] >= every

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
            # Outside the lock (the pass takes it itself); joins a pass already running.
            self.schedule_forecasts(tenant_id)
            await self.forecasting[tenant_id]


def _forecast_rules(engine: AlertEngine) -> bool:
    return any(r.kind is RuleKind.FORECAST for r in engine.rules.values())


def _signature(rules: list[Rule]) -> tuple[Any, ...]:
    """What a series' last forecast was for: a changed rule makes it due at once."""
    return tuple((r.id, r.updated_at) for r in rules)


def _now() -> datetime:
    return datetime.now(UTC)
