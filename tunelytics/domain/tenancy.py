"""Tenants own catalogues, listeners and everything derived from them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from tunelytics.domain.errors import InvalidItem

# Checked with fullmatch: a "$" anchor would also accept a trailing newline ("acme\n").
SLUG = re.compile(r"[a-z0-9][a-z0-9-]{1,62}")


@dataclass(slots=True)
class Tenant:
    id: str
    name: str
    timezone: str = "UTC"
    retention_days: int = 30
    created_at: datetime | None = None


def check_slug(slug: str) -> str:
    if not SLUG.fullmatch(slug):
        raise InvalidItem("tenant", "must be 2-63 characters of a-z, 0-9 and -")
    return slug
