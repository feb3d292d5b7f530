"""Alerts, incidents, rules, silences and webhooks: roles, tenancy and error mapping
around the alert service."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

from strawberry import Info

from tunelytics.domain.auth import Permission
from tunelytics.domain.monitoring.alerting import (
    Alert,
    AlertStateError,
    Feedback,
    Incident,
    Rule,
    RuleValidationError,
    Silence,
)
from tunelytics.domain.paging import Page
from tunelytics.resolvers.context import Context
from tunelytics.resolvers.errors import BadUserInput, NotFound
from tunelytics.resolvers.expiry import check_token, ends_with_token
from tunelytics.resolvers.pagination import check_first, decode_cursor
from tunelytics.resolvers.tenancy import require_registered_tenant
from tunelytics.services.alerts import AlertService, alerts_channel
from tunelytics.storage.alerts import AlertFilter, Webhook

CtxInfo = Info[Context, None]
ORDER = "STARTED_AT"
MAX_RULES = 500


def service(info: CtxInfo) -> AlertService:
    alerting = info.context.services.alerting
    if alerting is None:
        raise NotFound("alerting is not enabled on this server")
    return alerting


def invalid(error: RuleValidationError) -> BadUserInput:
    return BadUserInput(
        str(error), errors=[{"field": e.field, "message": e.message} for e in error.errors]
    )


def _position(after: str | None) -> str | None:
    position = decode_cursor(after, ORDER)
    return None if position is None else str(position[0])


async def alerts(info: CtxInfo, where: AlertFilter, first: int, after: str | None) -> Page[Alert]:
    principal = info.context.authorize(Permission.READ)
    check_first(first, info.context.settings.limits.max_page)
    return await service(info).repo.alert_page(principal.tenant_id, where, _position(after), first)


async def alert(info: CtxInfo, alert_id: str) -> Alert | None:
    principal = info.context.authorize(Permission.READ)
    return await service(info).repo.alert(principal.tenant_id, alert_id)


async def incidents(
    info: CtxInfo, states: tuple[str, ...], first: int, after: str | None
) -> Page[Incident]:
    principal = info.context.authorize(Permission.READ)
    check_first(first, info.context.settings.limits.max_page)
    return await service(info).repo.incident_page(
        principal.tenant_id, states, _position(after), first
    )


async def incident(info: CtxInfo, incident_id: str) -> Incident | None:
    principal = info.context.authorize(Permission.READ)
    return await service(info).repo.incident(principal.tenant_id, incident_id)


async def rules(info: CtxInfo) -> list[Rule]:
    principal = info.context.authorize(Permission.READ)
    return await service(info).repo.all_rules(principal.tenant_id)


async def silences(info: CtxInfo) -> list[Silence]:
    principal = info.context.authorize(Permission.READ)
    return await service(info).repo.all_silences(principal.tenant_id)


async def webhooks(info: CtxInfo) -> list[Webhook]:
    principal = info.context.authorize(Permission.MANAGE_ALERTS)
    return await service(info).repo.webhooks(principal.tenant_id)


# --- rules -----------------------------------------------------------------------------


async def create_rule(info: CtxInfo, data: dict[str, Any]) -> Rule:
    principal = info.context.authorize(Permission.MANAGE_ALERTS)
    await require_registered_tenant(info.context)
    alerting = service(info)
    try:
        rule = Rule.from_input(principal.tenant_id, data, rule_id=f"rule-{uuid.uuid4().hex[:12]}")
    except RuleValidationError as error:
        raise invalid(error) from None
    now = datetime.now(UTC)
    rule.created_at = rule.updated_at = now
    if len(await alerting.repo.all_rules(principal.tenant_id)) >= MAX_RULES:
        raise BadUserInput(f"a tenant may have at most {MAX_RULES} alert rules")
    await alerting.repo.insert_rule(principal.tenant_id, rule)
    alerting.invalidate(principal.tenant_id)
    return rule


async def update_rule(info: CtxInfo, rule_id: str, data: dict[str, Any]) -> Rule:
    principal = info.context.authorize(Permission.MANAGE_ALERTS)
    alerting = service(info)
    existing = await alerting.repo.rule(principal.tenant_id, rule_id)
    if existing is None:
        raise NotFound(f"no alert rule {rule_id}")
    try:
        rule = Rule.from_input(principal.tenant_id, data, rule_id=rule_id)
    except RuleValidationError as error:
        raise invalid(error) from None
    rule.created_at, rule.updated_at = existing.created_at, datetime.now(UTC)
    await alerting.repo.save_rule(principal.tenant_id, rule)
    alerting.invalidate(principal.tenant_id)
    return rule


async def delete_rule(info: CtxInfo, rule_id: str) -> bool:
    principal = info.context.authorize(Permission.MANAGE_ALERTS)
    alerting = service(info)
    if not await alerting.repo.delete_rule(principal.tenant_id, rule_id):
        raise NotFound(f"no alert rule {rule_id}")
    alerting.invalidate(principal.tenant_id)
    return True


# --- operators' responses --------------------------------------------------------------


async def acknowledge(info: CtxInfo, alert_id: str) -> Alert:
    return await _respond(info, alert_id, resolve=False)


async def resolve(info: CtxInfo, alert_id: str) -> Alert:
    return await _respond(info, alert_id, resolve=True)


async def _respond(info: CtxInfo, alert_id: str, *, resolve: bool) -> Alert:
    principal = info.context.authorize(Permission.RESPOND_ALERTS)
    alerting = service(info)
    step = alerting.resolve if resolve else alerting.acknowledge
    try:
        found = await step(principal.tenant_id, alert_id, principal.subject)
    except AlertStateError as error:
        raise BadUserInput(str(error)) from None
    if found is None:
        raise NotFound(f"no alert {alert_id}")
    return found


async def feedback(info: CtxInfo, alert_id: str, verdict: Feedback) -> Alert:
    principal = info.context.authorize(Permission.RESPOND_ALERTS)
    found = await service(info).feedback(principal.tenant_id, alert_id, verdict, principal.subject)
    if found is None:
        raise NotFound(f"no alert {alert_id}")
    return found


async def create_silence(info: CtxInfo, data: dict[str, Any]) -> Silence:
    principal = info.context.authorize(Permission.RESPOND_ALERTS)
    await require_registered_tenant(info.context)
    alerting = service(info)
    now = datetime.now(UTC)
    try:
        silence = Silence.from_input(
            principal.tenant_id,
            {"starts_at": now, **data, "created_by": principal.subject, "created_at": now},
            silence_id=f"sil-{uuid.uuid4().hex[:12]}",
        )
    except RuleValidationError as error:
        raise invalid(error) from None
    await alerting.repo.save_silence(principal.tenant_id, silence)
    alerting.invalidate(principal.tenant_id)
    return silence


async def expire_silence(info: CtxInfo, silence_id: str) -> Silence:
    principal = info.context.authorize(Permission.RESPOND_ALERTS)
    alerting = service(info)
    silence = await alerting.repo.silence(principal.tenant_id, silence_id)
    if silence is None:
        raise NotFound(f"no silence {silence_id}")
    now = datetime.now(UTC)
    if silence.ends_at > now:
        silence.ends_at = max(now, silence.starts_at)
        await alerting.repo.save_silence(principal.tenant_id, silence)
        alerting.invalidate(principal.tenant_id)
    return silence


# --- webhooks --------------------------------------------------------------------------


async def create_webhook(info: CtxInfo, url: str, min_severity_rank: int) -> Webhook:
    principal = info.context.authorize(Permission.MANAGE_ALERTS)
    await require_registered_tenant(info.context)
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc or len(url) > 2000:
        raise BadUserInput("url must be an absolute http(s) URL", argument="url")
    hook = Webhook(
        id=f"wh-{uuid.uuid4().hex[:12]}",
        url=url,
        secret=secrets.token_urlsafe(32),
        min_severity_rank=min_severity_rank,
        created_at=datetime.now(UTC),
    )
    await service(info).repo.add_webhook(principal.tenant_id, hook)
    return hook


async def delete_webhook(info: CtxInfo, hook_id: str) -> bool:
    principal = info.context.authorize(Permission.MANAGE_ALERTS)
    if not await service(info).repo.delete_webhook(principal.tenant_id, hook_id):
        raise NotFound(f"no webhook {hook_id}")
    return True


# --- live events -----------------------------------------------------------------------


async def alert_stream(info: CtxInfo, min_severity_rank: int) -> AsyncIterator[dict[str, Any]]:
    """The caller's tenant's alert events from now on, until the token expires."""
    ctx = info.context
    principal = ctx.authorize(Permission.READ)
    await require_registered_tenant(ctx)
    async with ctx.services.broadcaster.subscribe(alerts_channel(principal.tenant_id)) as q:
        with ends_with_token(principal, q):
            while True:
                event = await q.get()
                check_token(event)
                # The channel is the tenant's; the check is a second lock on the door.
                if event.get("tenant_id") != principal.tenant_id:
                    continue
                if event["alert"]["severity_rank"] < min_severity_rank:
                    continue
                yield event
