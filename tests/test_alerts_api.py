"""Alerts through the real server: rules raise alerts from ingested points, the lifecycle
(fired, acknowledged, resolved) is pushed over the alerts subscription, also across two
server processes through Redis; roles are enforced and tenants never meet."""

from __future__ import annotations

import itertools
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.conftest import SeededTenant
from tests.helpers import Api, TransportWs, codes, server_pair
from tests.test_metrics_ingest import INGEST, iso, point
from tunelytics.domain.auth import Role

REDIS_URL = "redis://127.0.0.1:6379/0"
CREATE_RULE = """mutation($rule: AlertRuleInput!) { createAlertRule(rule: $rule) {
  id name kind selector severity threshold } }"""
ALERT_FIELDS = "id status severity ruleId seriesName labels { name value } lastValue silenced"
ALERTS = f"""query($filter: AlertFilter, $first: Int!, $after: String) {{
  alerts(filter: $filter, first: $first, after: $after) {{
    edges {{ node {{ {ALERT_FIELDS} }} }} pageInfo {{ hasNextPage endCursor }} }} }}"""
ALERT = f"query($id: ID!) {{ alert(id: $id) {{ {ALERT_FIELDS} }} }}"
ACK = "mutation($id: ID!) { acknowledgeAlert(id: $id) { id status } }"
RESOLVE = "mutation($id: ID!) { resolveAlert(id: $id) { id status } }"
FEEDBACK = "mutation($id: ID!) { alertFeedback(id: $id, feedback: NOISE) { id feedback } }"
SILENCE = """mutation($s: SilenceInput!) { createSilence(silence: $s) {
  id matchers status endsAt } }"""
EXPIRE = "mutation($id: ID!) { expireSilence(id: $id) { id status } }"
INCIDENTS = "{ incidents(first: 10) { edges { node { id status seriesCount alertIds } } } }"
SUBSCRIBE = f"""subscription($min: Severity!) {{ alerts(minSeverity: $min) {{
  kind notify alert {{ {ALERT_FIELDS} }} incident {{ id }} }} }}"""
serial = itertools.count()


def threshold_rule(service: str, severity: str = "WARNING") -> dict[str, Any]:
    return {
        "name": f"latency high {service}",
        "kind": "THRESHOLD",
        "selector": f'api_latency_ms{{service="{service}"}}',
        "op": ">",
        "threshold": 100.0,
        "severity": severity,
    }


def stamp() -> datetime:
    """Strictly increasing times a little in the past (each call a new millisecond)."""
    return datetime.now(UTC) - timedelta(seconds=30) + timedelta(milliseconds=next(serial))


def latency(service: str, value: float) -> dict[str, Any]:
    return point("api_latency_ms", stamp(), value, service=service)


async def ingest(api: Api, tok: str, *points: dict[str, Any]) -> None:
    payload = (await api.data(INGEST, {"points": list(points)}, tok))["ingestMetrics"]
    assert payload["rejected"] == [], payload


async def next_event(ws: TransportWs, within: float = 30.0) -> dict[str, Any]:
    message = await ws.receive(within)
    assert message["type"] == "next", message
    assert "errors" not in message["payload"], message
    event: dict[str, Any] = message["payload"]["data"]["alerts"]
    return event


async def go_live(ws: TransportWs, api: Api, tok: str) -> set[str]:
    """A subscription has no acknowledgement: fire sentinel alerts (a new series each
    time) until one arrives. Returns the sentinel series' services, to skip later."""
    rule = {**threshold_rule("-"), "name": "sentinel", "selector": "sentinel_latency_ms"}
    await api.data(CREATE_RULE, {"rule": rule}, tok)
    sentinels: set[str] = set()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        service = f"sentinel-{uuid.uuid4().hex[:6]}"
        sentinels.add(service)
        await ingest(api, tok, point("sentinel_latency_ms", stamp(), 500.0, service=service))
        try:
            event = await next_event(ws, 0.5)
        except TimeoutError:
            continue
        assert _service(event) in sentinels, event
        return sentinels
    raise AssertionError("the subscription never received an alert")


def _service(event: dict[str, Any]) -> str:
    labels = {lb["name"]: lb["value"] for lb in event["alert"]["labels"]}
    return labels["service"]


async def next_not(ws: TransportWs, skip: set[str]) -> dict[str, Any]:
    while _service(event := await next_event(ws)) in skip:
        pass
    return event


async def create_rules(api: Api, tok: str) -> None:
    rule = {**threshold_rule("-"), "name": "latency high", "selector": "api_latency_ms"}
    await api.data(CREATE_RULE, {"rule": rule}, tok)


async def test_an_alert_fires_is_acknowledged_and_resolves_live(
    api: Api, server: Any, tenant: SeededTenant
) -> None:
    await create_rules(api, tenant.admin)
    ingester = tenant.token(Role.INGEST)
    async with TransportWs.connect(server.ws_url, tenant.viewer) as ws:
        await ws.subscribe(SUBSCRIBE, {"min": "INFO"})
        skip = await go_live(ws, api, tenant.admin)
        await ingest(api, ingester, latency("checkout", 20.0), latency("checkout", 180.0))
        fired = await next_not(ws, skip)
        assert fired["kind"] == "FIRED" and fired["notify"] is True
        assert fired["alert"]["status"] == "FIRING" and fired["alert"]["lastValue"] == 180.0
        assert fired["incident"] is not None
        alert_id = fired["alert"]["id"]

        listed = await api.data(
            ALERTS, {"filter": {"status": ["FIRING"]}, "first": 100}, tenant.viewer
        )
        assert alert_id in [e["node"]["id"] for e in listed["alerts"]["edges"]]
        acked = await api.data(ACK, {"id": alert_id}, tenant.token(Role.ANALYST))
        assert acked["acknowledgeAlert"]["status"] == "ACKNOWLEDGED"
        event = await next_not(ws, skip)
        assert (event["kind"], event["alert"]["id"]) == ("ACKNOWLEDGED", alert_id)

        # Recovery: the rule resolves after two points back under the threshold.
        await ingest(api, ingester, latency("checkout", 30.0), latency("checkout", 25.0))
        event = await next_not(ws, skip)
        assert (event["kind"], event["alert"]["id"]) == ("RESOLVED", alert_id)
    stored = await api.data(ALERT, {"id": alert_id}, tenant.viewer)
    assert stored["alert"]["status"] == "RESOLVED"
    incidents = await api.data(INCIDENTS, token=tenant.viewer)
    assert any(alert_id in e["node"]["alertIds"] for e in incidents["incidents"]["edges"])


async def test_roles_decide_who_reads_responds_and_manages(api: Api, tenant: SeededTenant) -> None:
    rule = threshold_rule("roles")
    for role in (Role.VIEWER, Role.ANALYST, Role.INGEST):
        assert codes(await api.post(CREATE_RULE, {"rule": rule}, tenant.token(role))) == [
            "FORBIDDEN"
        ]
    await api.data(CREATE_RULE, {"rule": rule}, tenant.admin)
    await ingest(api, tenant.token(Role.INGEST), latency("roles", 300.0))
    listed = await api.data(ALERTS, {"filter": {"status": ["FIRING"]}, "first": 100}, tenant.viewer)
    (alert_id,) = [
        e["node"]["id"]
        for e in listed["alerts"]["edges"]
        if {"name": "service", "value": "roles"} in e["node"]["labels"]
    ]
    assert codes(await api.post(ALERTS, {"first": 5}, tenant.token(Role.INGEST))) == ["FORBIDDEN"]
    for mutation in (ACK, RESOLVE, FEEDBACK):
        for role in (Role.VIEWER, Role.INGEST):
            body = await api.post(mutation, {"id": alert_id}, tenant.token(role))
            assert codes(body) == ["FORBIDDEN"], (mutation, role)
    silence = {"matchers": 'service="roles"', "endsAt": iso(datetime.now(UTC) + timedelta(hours=1)),
               "comment": "maintenance"}  # fmt: skip
    assert codes(await api.post(SILENCE, {"s": silence}, tenant.viewer)) == ["FORBIDDEN"]
    created = await api.data(SILENCE, {"s": silence}, tenant.token(Role.ANALYST))
    assert created["createSilence"]["status"] == "active"
    expired = await api.data(
        EXPIRE, {"id": created["createSilence"]["id"]}, tenant.token(Role.ANALYST)
    )
    assert expired["expireSilence"]["status"] == "expired"
    noise = await api.data(FEEDBACK, {"id": alert_id}, tenant.token(Role.ANALYST))
    assert noise["alertFeedback"]["feedback"] == "NOISE"
    resolved = await api.data(RESOLVE, {"id": alert_id}, tenant.token(Role.ANALYST))
    assert resolved["resolveAlert"]["status"] == "RESOLVED"
    # A resolved alert cannot be acknowledged: a clear error, not a crash.
    assert codes(await api.post(ACK, {"id": alert_id}, tenant.admin)) == ["BAD_USER_INPUT"]


async def test_bad_rules_and_silences_are_refused_with_the_field(
    api: Api, tenant: SeededTenant
) -> None:
    bad = {**threshold_rule("x"), "selector": 'api_latency_ms{service="x"'}
    body = await api.post(CREATE_RULE, {"rule": bad}, tenant.admin)
    assert codes(body) == ["BAD_USER_INPUT"]
    assert body["errors"][0]["extensions"]["errors"][0]["field"] == "selector"
    no_threshold = {k: v for k, v in threshold_rule("x").items() if k != "threshold"}
    body = await api.post(CREATE_RULE, {"rule": no_threshold}, tenant.admin)
    assert codes(body) == ["BAD_USER_INPUT"]
    past = {"matchers": 'service="x"', "endsAt": iso(datetime.now(UTC) - timedelta(hours=1)),
            "comment": "too late"}  # fmt: skip
    assert codes(await api.post(SILENCE, {"s": past}, tenant.admin)) == ["BAD_USER_INPUT"]
    assert codes(await api.post(ACK, {"id": "no-such-alert"}, tenant.admin)) == ["NOT_FOUND"]


async def test_a_silenced_alert_is_stored_but_does_not_notify(
    api: Api, tenant: SeededTenant
) -> None:
    await api.data(CREATE_RULE, {"rule": threshold_rule("quiet")}, tenant.admin)
    silence = {"matchers": 'service="quiet"', "endsAt": iso(datetime.now(UTC) + timedelta(hours=1)),
               "comment": "deploy"}  # fmt: skip
    await api.data(SILENCE, {"s": silence}, tenant.admin)
    await ingest(api, tenant.admin, latency("quiet", 999.0))
    listed = await api.data(ALERTS, {"first": 100}, tenant.viewer)
    quiet = [
        e["node"]
        for e in listed["alerts"]["edges"]
        if {"name": "service", "value": "quiet"} in e["node"]["labels"]
    ]
    assert len(quiet) == 1 and quiet[0]["silenced"] is True


async def test_tenants_with_the_same_series_and_rules_never_meet(
    api: Api, server: Any, tenant: SeededTenant, other_tenant: SeededTenant
) -> None:
    for owner in (tenant, other_tenant):
        await api.data(CREATE_RULE, {"rule": threshold_rule("shared")}, owner.admin)
    async with TransportWs.connect(server.ws_url, other_tenant.viewer) as ws:
        await ws.subscribe(SUBSCRIBE, {"min": "INFO"})
        skip = await go_live(ws, api, other_tenant.admin)
        await ingest(api, tenant.admin, latency("shared", 400.0))
        listed = await api.data(ALERTS, {"first": 100}, tenant.viewer)
        (mine,) = [
            e["node"]["id"]
            for e in listed["alerts"]["edges"]
            if {"name": "service", "value": "shared"} in e["node"]["labels"]
        ]
        # The other tenant can neither see, acknowledge, resolve nor rate it...
        assert (await api.data(ALERT, {"id": mine}, other_tenant.viewer))["alert"] is None
        for mutation in (ACK, RESOLVE, FEEDBACK):
            assert codes(await api.post(mutation, {"id": mine}, other_tenant.admin)) == [
                "NOT_FOUND"
            ]
        theirs = await api.data(ALERTS, {"first": 100}, other_tenant.viewer)
        assert mine not in [e["node"]["id"] for e in theirs["alerts"]["edges"]]
        # ...nor silence it: a silence of theirs on the same labels mutes only their own.
        silence = {"matchers": 'service="shared"', "comment": "theirs",
                   "endsAt": iso(datetime.now(UTC) + timedelta(hours=1))}  # fmt: skip
        await api.data(SILENCE, {"s": silence}, other_tenant.admin)
        # Their own alert on the same series name arrives; the first tenant's never did.
        await ingest(api, other_tenant.admin, latency("shared", 400.0))
        event = await next_not(ws, skip)
        assert _service(event) == "shared" and event["alert"]["id"] != mine
        assert event["notify"] is False  # their silence
    still = await api.data(ALERT, {"id": mine}, tenant.viewer)
    assert still["alert"]["status"] == "FIRING" and still["alert"]["silenced"] is False


async def test_an_alert_raised_on_one_server_reaches_a_subscriber_of_another(
    mongo_url: str, database_name: str, tmp_path: Path, tenant: SeededTenant
) -> None:
    env = {"MONGODB_URL": mongo_url, "MONGODB_DATABASE": database_name, "REDIS_URL": REDIS_URL}
    with server_pair(env, tmp_path) as (first, second):
        writer = Api(first.graphql_url)
        try:
            await writer.data(CREATE_RULE, {"rule": threshold_rule("replicas")}, tenant.admin)
            async with TransportWs.connect(second.ws_url, tenant.viewer) as ws:
                await ws.subscribe(SUBSCRIBE, {"min": "WARNING"})
                skip = await go_live(ws, writer, tenant.admin)
                await ingest(writer, tenant.admin, latency("replicas", 250.0))
                event = await next_not(ws, skip)
        finally:
            await writer.client.aclose()
    assert event["kind"] == "FIRED" and _service(event) == "replicas"


async def test_the_demo_series_come_with_alerts_from_the_start(
    api: Api, storage: Any, tenant: SeededTenant
) -> None:
    from tunelytics.services.demo import seed_monitoring

    assert await seed_monitoring(storage, tenant.id, days=2) > 1000
    firing = await api.data(ALERTS, {"filter": {"status": ["FIRING"]}, "first": 50}, tenant.viewer)
    nodes = [e["node"] for e in firing["alerts"]["edges"]]
    # The planted bad deploy: the error rate is over 5% now, a critical alert fires.
    assert any(n["seriesName"] == "error_rate_percent" and n["severity"] == "CRITICAL"
               for n in nodes)  # fmt: skip
    # The planted CPU leak on web-1: a predictive alert, from the forecast rule, fires now.
    predicted = {"name": "alertname", "value": "CPU heading for saturation"}
    web_1 = {"name": "host", "value": "web-1"}
    assert [web_1 in n["labels"] for n in nodes if predicted in n["labels"]] == [True], nodes
    resolved = await api.data(
        ALERTS, {"filter": {"status": ["RESOLVED"]}, "first": 50}, tenant.viewer
    )
    names = {e["node"]["seriesName"] for e in resolved["alerts"]["edges"]}
    assert {"api_latency_ms", "cpu_percent"} <= names  # the spike and the runaway job


async def test_an_absence_rule_fires_from_the_periodic_check(
    api: Api, server: Any, tenant: SeededTenant
) -> None:
    rule = {"name": "heartbeat missing", "kind": "ABSENCE", "selector": "heartbeat",
            "absentFor": "1m", "severity": "CRITICAL"}  # fmt: skip
    await api.data(CREATE_RULE, {"rule": rule}, tenant.admin)
    async with TransportWs.connect(server.ws_url, tenant.viewer) as ws:
        await ws.subscribe(SUBSCRIBE, {"min": "CRITICAL"})
        # The last heartbeat was ten minutes ago; nothing else arrives: only the server's
        # periodic check (every 15 s) can notice.
        beat = point("heartbeat", datetime.now(UTC) - timedelta(minutes=10), 1.0, service="db")
        await ingest(api, tenant.admin, beat)
        event = await next_event(ws, within=60)
    assert event["kind"] == "FIRED" and _service(event) == "db"
    assert event["alert"]["severity"] == "CRITICAL"
