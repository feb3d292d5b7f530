"""Who is calling and what they may do."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime


class Role(enum.StrEnum):
    VIEWER = "viewer"
    ANALYST = "analyst"
    ADMIN = "admin"
    INGEST = "ingest"


class Permission(enum.Enum):
    READ = "read"
    WRITE_CATALOG = "write_catalog"
    WRITE_LISTENS = "write_listens"
    WRITE_METRICS = "write_metrics"
    TRAIN = "train"
    # Acknowledge, resolve, silence alerts and give feedback on them.
    RESPOND_ALERTS = "respond_to_alerts"
    # Alert rules and webhooks.
    MANAGE_ALERTS = "manage_alerts"


ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: frozenset({Permission.READ}),
    Role.ANALYST: frozenset({Permission.READ, Permission.TRAIN, Permission.RESPOND_ALERTS}),
    Role.ADMIN: frozenset(Permission),
    # Service accounts that push data: they write, they do not read.
    Role.INGEST: frozenset({Permission.WRITE_LISTENS, Permission.WRITE_METRICS}),
}


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller, always bound to exactly one tenant."""

    subject: str
    tenant_id: str
    roles: frozenset[Role]
    expires_at: datetime | None = None

    def can(self, permission: Permission) -> bool:
        return any(permission in ROLE_PERMISSIONS[role] for role in self.roles)
