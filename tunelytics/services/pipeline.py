"""The monitoring pipeline of one server process, composed: ingestion and detection,
alerts, webhooks, and their periodic jobs."""

from __future__ import annotations

from dataclasses import dataclass

from pymongo.asynchronous.database import AsyncDatabase

from tunelytics.pubsub import Broadcaster
from tunelytics.services.alerts import AlertService
from tunelytics.services.monitoring import MonitoringService, MonitoringSettings
from tunelytics.services.webhooks import WebhookSender
from tunelytics.storage.alerts import AlertRepository
from tunelytics.storage.monitoring import Document, monitoring_store, tenant_retentions

ALERT_CHECK_SECONDS = 15.0


@dataclass
class MonitoringPipeline:
    monitoring: MonitoringService
    alerts: AlertService
    webhooks: WebhookSender

    async def start(self) -> None:
        await self.webhooks.start()
        await self.monitoring.start()
        self.monitoring.add_periodic("alerts-check", ALERT_CHECK_SECONDS, self.check_alerts)

    async def check_alerts(self) -> None:
        await self.alerts.check(await self.alerts.repo.tenants_with_rules())

    async def stop(self) -> None:
        await self.monitoring.stop()
        await self.webhooks.stop()


def build_pipeline(
    db: AsyncDatabase[Document],
    broadcaster: Broadcaster,
    settings: MonitoringSettings | None = None,
) -> MonitoringPipeline:
    store = monitoring_store(db)
    monitoring = MonitoringService(store, settings, retentions=lambda: tenant_retentions(db))
    webhooks = WebhookSender()
    alerts = AlertService(
        AlertRepository(db), store.series, broadcaster, webhooks, monitoring.locks
    )
    monitoring.alerts = alerts
    return MonitoringPipeline(monitoring, alerts, webhooks)
