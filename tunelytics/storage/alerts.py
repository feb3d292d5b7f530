"""Alert rules, silences, alerts, incidents, webhooks and the noise model of each tenant.

The alerting domain writes its own documents (`to_document`, with its IDs as `_id`); here
the `_id` becomes `"<tenant>/<id>"` and the domain's ID moves to `id`, like every other
collection, so two tenants with the same rule names (hence the same alert fingerprints)
can never overwrite or read each other's documents. Lists are paged on `seq`, a string
that sorts like (started ms, id): one range scan (docs/mongodb-compat.md g).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel, ReplaceOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from tunelytics.domain.monitoring.alerting import Alert, Incident, NoiseModel, Rule, Silence
from tunelytics.domain.paging import Page
from tunelytics.storage.scope import document_key, tenant_scope

Document = dict[str, Any]
OPEN_ALERT_STATES = ["pending", "firing", "acknowledged"]

ALERT_INDEXES: dict[str, list[IndexModel]] = {
    "alert_rules": [IndexModel([("tenant_id", ASCENDING), ("id", ASCENDING)], unique=True)],
    "silences": [IndexModel([("tenant_id", ASCENDING), ("ends_at", ASCENDING)])],
    "alerts": [
        IndexModel([("tenant_id", ASCENDING), ("seq", DESCENDING)]),
        IndexModel([("tenant_id", ASCENDING), ("state", ASCENDING)]),
    ],
    "incidents": [
        IndexModel([("tenant_id", ASCENDING), ("seq", DESCENDING)]),
        IndexModel([("tenant_id", ASCENDING), ("state", ASCENDING)]),
    ],
    "webhooks": [IndexModel([("tenant_id", ASCENDING), ("id", ASCENDING)], unique=True)],
}


def _stored(tenant_id: str, doc: Document) -> Document:
    """A domain document as stored: tenant-prefixed `_id`, the domain's ID in `id`."""
    return {**doc, "_id": document_key(tenant_id, str(doc["_id"])), "id": doc["_id"]}


def _domain(doc: Document) -> Document:
    return {**doc, "_id": doc["id"]}


def _seq(started: datetime, item_id: str) -> str:
    millis = int(started.timestamp() * 1000)
    return f"{millis:013d}{item_id}"


@dataclass(frozen=True, slots=True)
class AlertFilter:
    states: tuple[str, ...] = ()
    min_severity_rank: int | None = None
    rule_id: str | None = None


@dataclass(frozen=True, slots=True)
class Webhook:
    id: str
    url: str
    secret: str
    min_severity_rank: int
    created_at: datetime


class AlertRepository:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.rules: AsyncCollection[Document] = db["alert_rules"]
        self.silences: AsyncCollection[Document] = db["silences"]
        self.alerts: AsyncCollection[Document] = db["alerts"]
        self.incidents: AsyncCollection[Document] = db["incidents"]
        self.webhooks_: AsyncCollection[Document] = db["webhooks"]
        self.noise: AsyncCollection[Document] = db["noise_models"]
        self.db = db

    # --- rules and silences --------------------------------------------------------------

    async def tenants_with_rules(self) -> list[str]:
        cursor = self.rules.find({}, {"tenant_id": 1})
        return sorted({doc["tenant_id"] async for doc in cursor})

    async def all_rules(self, tenant_id: str) -> list[Rule]:
        docs = await self.rules.find(tenant_scope(tenant_id)).sort("id", 1).to_list()
        return [Rule.from_document(_domain(doc)) for doc in docs]

    async def rule(self, tenant_id: str, rule_id: str) -> Rule | None:
        doc = await self.rules.find_one({"_id": document_key(tenant_id, rule_id)})
        return Rule.from_document(_domain(doc)) if doc else None

    async def save_rule(self, tenant_id: str, rule: Rule) -> None:
        doc = _stored(tenant_id, rule.to_document())
        await self.rules.replace_one({"_id": doc["_id"]}, doc, upsert=True)

    async def insert_rule(self, tenant_id: str, rule: Rule) -> bool:
        """False when the tenant already has a rule with this ID."""
        doc = _stored(tenant_id, rule.to_document())
        result = await self.rules.update_one(
            {"_id": doc["_id"]}, {"$setOnInsert": doc}, upsert=True
        )
        return result.upserted_id is not None

    async def delete_rule(self, tenant_id: str, rule_id: str) -> bool:
        result = await self.rules.delete_one({"_id": document_key(tenant_id, rule_id)})
        return result.deleted_count == 1

    async def all_silences(self, tenant_id: str) -> list[Silence]:
        docs = await self.silences.find(tenant_scope(tenant_id)).to_list()
        return [Silence.from_document(_domain(doc)) for doc in docs]

    async def silence(self, tenant_id: str, silence_id: str) -> Silence | None:
        doc = await self.silences.find_one({"_id": document_key(tenant_id, silence_id)})
        return Silence.from_document(_domain(doc)) if doc else None

    async def save_silence(self, tenant_id: str, silence: Silence) -> None:
        doc = _stored(tenant_id, silence.to_document())
        await self.silences.replace_one({"_id": doc["_id"]}, doc, upsert=True)

    # --- alerts and incidents ------------------------------------------------------------

    async def open_alerts(self, tenant_id: str) -> list[Alert]:
        query = tenant_scope(tenant_id, state={"$in": OPEN_ALERT_STATES})
        return [Alert.from_document(_domain(d)) for d in await self.alerts.find(query).to_list()]

    async def open_incidents(self, tenant_id: str) -> list[Incident]:
        query = tenant_scope(tenant_id, state={"$in": ["open"]})
        docs = await self.incidents.find(query).to_list()
        return [Incident.from_document(_domain(d)) for d in docs]

    async def alert(self, tenant_id: str, alert_id: str) -> Alert | None:
        doc = await self.alerts.find_one({"_id": document_key(tenant_id, alert_id)})
        return Alert.from_document(_domain(doc)) if doc else None

    async def incident(self, tenant_id: str, incident_id: str) -> Incident | None:
        doc = await self.incidents.find_one({"_id": document_key(tenant_id, incident_id)})
        return Incident.from_document(_domain(doc)) if doc else None

    async def write(
        self,
        tenant_id: str,
        alerts: list[Alert],
        incidents: list[Incident],
        dropped: list[Alert],
    ) -> None:
        ops = []
        for alert in alerts:
            doc = _stored(tenant_id, alert.to_document())
            doc["seq"] = _seq(alert.started_at, alert.id)
            ops.append(ReplaceOne({"_id": doc["_id"]}, doc, upsert=True))
        if ops:
            await self.alerts.bulk_write(ops, ordered=False)
        if dropped:
            await self.alerts.delete_many(
                {"_id": {"$in": [document_key(tenant_id, a.id) for a in dropped]}}
            )
        incident_ops = []
        for incident in incidents:
            doc = _stored(tenant_id, incident.to_document())
            doc["seq"] = _seq(incident.started_at, incident.id)
            incident_ops.append(ReplaceOne({"_id": doc["_id"]}, doc, upsert=True))
        if incident_ops:
            await self.incidents.bulk_write(incident_ops, ordered=False)

    async def alert_page(
        self, tenant_id: str, where: AlertFilter, after: str | None, first: int
    ) -> Page[Alert]:
        query = tenant_scope(tenant_id)
        if where.states:
            query["state"] = {"$in": list(where.states)}
        if where.min_severity_rank is not None:
            query["severity_rank"] = {"$gte": where.min_severity_rank}
        if where.rule_id is not None:
            query["rule_id"] = {"$eq": where.rule_id}
        if after is not None:
            query["seq"] = {"$lt": after}
        docs = await self.alerts.find(query).sort("seq", -1).limit(first + 1).to_list()
        page = docs[:first]
        return Page(
            items=[Alert.from_document(_domain(d)) for d in page],
            positions=[(d["seq"], d["id"]) for d in page],
            has_next=len(docs) > first,
        )

    async def incident_page(
        self, tenant_id: str, states: tuple[str, ...], after: str | None, first: int
    ) -> Page[Incident]:
        query = tenant_scope(tenant_id)
        if states:
            query["state"] = {"$in": list(states)}
        if after is not None:
            query["seq"] = {"$lt": after}
        docs = await self.incidents.find(query).sort("seq", -1).limit(first + 1).to_list()
        page = docs[:first]
        return Page(
            items=[Incident.from_document(_domain(d)) for d in page],
            positions=[(d["seq"], d["id"]) for d in page],
            has_next=len(docs) > first,
        )

    # --- noise model ---------------------------------------------------------------------

    async def noise_model(self, tenant_id: str) -> NoiseModel | None:
        doc = await self.noise.find_one({"_id": tenant_id})
        return NoiseModel.from_state(doc["state"]) if doc else None

    async def save_noise_model(self, tenant_id: str, model: NoiseModel) -> None:
        await self.noise.replace_one(
            {"_id": tenant_id},
            {"_id": tenant_id, "tenant_id": tenant_id, "state": model.to_state()},
            upsert=True,
        )

    # --- webhooks ------------------------------------------------------------------------

    async def webhooks(self, tenant_id: str) -> list[Webhook]:
        docs = await self.webhooks_.find(tenant_scope(tenant_id)).sort("id", 1).to_list()
        return [_webhook(doc) for doc in docs]

    async def add_webhook(self, tenant_id: str, hook: Webhook) -> None:
        await self.webhooks_.insert_one(
            {
                "_id": document_key(tenant_id, hook.id),
                "tenant_id": tenant_id,
                "id": hook.id,
                "url": hook.url,
                "secret": hook.secret,
                "min_severity_rank": hook.min_severity_rank,
                "created_at": hook.created_at,
            }
        )

    async def delete_webhook(self, tenant_id: str, hook_id: str) -> bool:
        result = await self.webhooks_.delete_one({"_id": document_key(tenant_id, hook_id)})
        return result.deleted_count == 1


def _webhook(doc: Mapping[str, Any]) -> Webhook:
    created = doc.get("created_at") or datetime.now(UTC)
    return Webhook(
        id=doc["id"],
        url=doc["url"],
        secret=doc["secret"],
        min_severity_rank=int(doc.get("min_severity_rank", 0)),
        created_at=created,
    )
