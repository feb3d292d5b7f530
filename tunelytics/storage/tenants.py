"""Tenants: the labels, brands and distributors that own everything else."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from tunelytics.domain.tenancy import Tenant

Document = dict[str, Any]


def _tenant(doc: Document) -> Tenant:
    settings = doc.get("settings", {})
    return Tenant(
        id=doc["_id"],
        name=doc["name"],
        timezone=settings.get("timezone", "UTC"),
        retention_days=settings.get("retention_days", 30),
        created_at=doc["created_at"],
    )


class TenantRepository:
    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self.collection = collection

    async def get(self, tenant_id: str) -> Tenant | None:
        doc = await self.collection.find_one({"_id": tenant_id})
        return _tenant(doc) if doc else None

    async def create(self, tenant: Tenant) -> bool:
        """Create the tenant if it is new; returns False when it already existed."""
        result = await self.collection.update_one(
            {"_id": tenant.id},
            {
                "$setOnInsert": {
                    "name": tenant.name,
                    "settings": {
                        "timezone": tenant.timezone,
                        "retention_days": tenant.retention_days,
                    },
                    "created_at": tenant.created_at or datetime.now(UTC),
                }
            },
            upsert=True,
        )
        return result.upserted_id is not None
