"""Silences and inhibition rules, as in Alertmanager.

A silence mutes every alert whose labels (plus `severity`) match all its matchers between
starts_at and ends_at; muted alerts still change state, their events carry notify=False.
An inhibition rule mutes target alerts while a firing source alert has the same values
of the `equal` labels (missing labels read as equal empties, as in Alertmanager); an
alert never inhibits itself.

>>> from datetime import UTC, datetime, timedelta
>>> t0 = datetime(2026, 12, 1, tzinfo=UTC)
>>> s = Silence.from_input("t1", {"matchers": 'service="api"', "starts_at": t0,
...     "ends_at": t0 + timedelta(hours=1), "created_by": "ana", "comment": "deploy"})
>>> s.is_active(t0 + timedelta(minutes=5)), s.is_active(t0 + timedelta(hours=2))
(True, False)
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tunelytics.domain.monitoring.alerting.matchers import (
    Matcher,
    MatcherError,
    all_match,
    parse_matchers,
)
from tunelytics.domain.monitoring.alerting.model import (
    FieldError,
    RuleValidationError,
    utc,
)


@dataclass(slots=True)
class Silence:
    id: str
    tenant_id: str
    matchers: tuple[Matcher, ...]
    starts_at: datetime
    ends_at: datetime
    created_by: str
    comment: str
    created_at: datetime | None = None

    def is_active(self, now: datetime) -> bool:
        return self.starts_at <= now < self.ends_at

    def status(self, now: datetime) -> str:
        """pending, active or expired (Alertmanager's silence states)."""
        if now < self.starts_at:
            return "pending"
        return "active" if now < self.ends_at else "expired"

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all_match(self.matchers, labels)

    @classmethod
    def from_input(
        cls, tenant_id: str, data: Mapping[str, Any], silence_id: str | None = None
    ) -> Silence:
        """Validated silence input: matchers (text or list; at least one, and not all
        matching the empty label set), starts_at (or created_at), ends_at after it,
        created_by and comment (both required, as in Alertmanager)."""
        errors: list[FieldError] = []
        matchers: tuple[Matcher, ...] = ()
        try:
            matchers = parse_matchers(data.get("matchers") or ())
            if not matchers:
                errors.append(FieldError("matchers", "a silence needs at least one matcher"))
            elif all(m.matches({}) for m in matchers):
                errors.append(FieldError("matchers", "matchers would silence every alert"))
        except MatcherError as error:
            errors.append(FieldError("matchers", str(error)))
        starts, ends = data.get("starts_at") or data.get("created_at"), data.get("ends_at")
        for name, value in (("starts_at", starts), ("ends_at", ends)):
            if not isinstance(value, datetime):
                errors.append(FieldError(name, "must be a date-time"))
        if isinstance(starts, datetime) and isinstance(ends, datetime):
            starts, ends = utc(starts), utc(ends)
            if ends <= starts:
                errors.append(FieldError("ends_at", "ends_at must be after starts_at"))
        for name in ("created_by", "comment"):
            value = data.get(name)
            if not isinstance(value, str) or not value.strip() or len(value) > 1000:
                errors.append(FieldError(name, f"{name} must be a non-empty string"))
        if errors:
            raise RuleValidationError(errors)
        assert isinstance(starts, datetime) and isinstance(ends, datetime)
        sid = silence_id or data.get("id") or _silence_id(tenant_id, matchers, starts)
        created = data.get("created_at")
        return cls(
            id=str(sid),
            tenant_id=tenant_id,
            matchers=matchers,
            starts_at=starts,
            ends_at=ends,
            created_by=data["created_by"].strip(),
            comment=data["comment"].strip(),
            created_at=utc(created) if isinstance(created, datetime) else None,
        )

    def to_document(self) -> dict[str, Any]:
        return {
            "_id": self.id,
            "tenant_id": self.tenant_id,
            "matchers": [m.to_document() for m in self.matchers],
            "starts_at": self.starts_at,
            "ends_at": self.ends_at,
            "created_by": self.created_by,
            "comment": self.comment,
            "created_at": self.created_at,
        }

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> Silence:
        return cls(
            id=str(doc.get("_id", doc.get("id"))),
            tenant_id=doc["tenant_id"],
            matchers=parse_matchers(doc["matchers"]),
            starts_at=utc(doc["starts_at"]),
            ends_at=utc(doc["ends_at"]),
            created_by=doc["created_by"],
            comment=doc["comment"],
            created_at=None if doc.get("created_at") is None else utc(doc["created_at"]),
        )


def _silence_id(tenant_id: str, matchers: tuple[Matcher, ...], starts: datetime) -> str:
    text = f"{tenant_id}\0{','.join(map(str, matchers))}\0{starts.isoformat()}"
    return "sil-" + hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


@dataclass(frozen=True, slots=True)
class InhibitRule:
    """Alertmanager's inhibit_rules entry: while an active alert matching
    source_matchers exists, alerts matching target_matchers with equal values of the
    `equal` labels are muted."""

    source_matchers: tuple[Matcher, ...]
    target_matchers: tuple[Matcher, ...]
    equal: tuple[str, ...] = ("service",)

    @classmethod
    def parse(cls, source: str, target: str, equal: tuple[str, ...] = ("service",)) -> InhibitRule:
        return cls(parse_matchers(source), parse_matchers(target), equal)

    def to_document(self) -> dict[str, Any]:
        return {
            "source_matchers": [m.to_document() for m in self.source_matchers],
            "target_matchers": [m.to_document() for m in self.target_matchers],
            "equal": list(self.equal),
        }

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> InhibitRule:
        return cls(
            parse_matchers(doc["source_matchers"]),
            parse_matchers(doc["target_matchers"]),
            tuple(doc.get("equal", ("service",))),
        )


DEFAULT_INHIBITIONS: tuple[InhibitRule, ...] = (
    InhibitRule.parse('severity="critical"', 'severity=~"warning|info"'),
    InhibitRule.parse('severity="warning"', 'severity="info"'),
)
