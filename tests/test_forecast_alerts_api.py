"""Forecast rules through the real server: a trending metric series raises a predictive
alert (crossing time and forecast value in its annotations) pushed over the alerts
subscription; the rule's input is validated; another tenant's rule never sees the series."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from tests.conftest import SeededTenant
from tests.helpers import Api, TransportWs, codes
from tests.test_alerts_api import CREATE_RULE, go_live, ingest, next_event
from tests.test_metrics_ingest import point
from tunelytics.domain.auth import Role

FIELDS = """id status ruleId ruleName seriesId seriesName lastValue
  labels { name value } annotations { name value }"""
SUBSCRIBE = f"""subscription {{ alerts(minSeverity: INFO) {{
  kind notify alert {{ {FIELDS} }} }} }}"""
ALERTS = f"""query($filter: AlertFilter) {{ alerts(filter: $filter, first: 100) {{
  edges {{ node {{ {FIELDS} }} }} }} }}"""
RULE_FIELDS = """mutation($rule: AlertRuleInput!) { createAlertRule(rule: $rule) {
  id kind threshold op horizonSeconds forecastLevel forecastOn everySeconds } }"""


def forecast_rule() -> dict[str, Any]:
    return {
        "name": "disk full within 2 h",
        "kind": "FORECAST",
        "selector": "disk_used_pct",
        "op": ">",
        "threshold": 90.0,
        "horizon": "2h",
        "every": "10s",
        "severity": "WARNING",
    }


def trending(service: str, seed: int) -> list[dict[str, Any]]:
    """A day of 5-minute points rising 1.56 an hour, ~87 now: the forecast's upper
    80% bound passes 90 within two hours."""
    rng = np.random.default_rng(seed)
    end = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    n = 288
    values = 50 + 0.13 * np.arange(n) + rng.normal(0, 0.3, n)
    return [
        point("disk_used_pct", end - timedelta(minutes=5 * (n - 1 - i)), float(v), service=service)
        for i, v in enumerate(values)
    ]


async def next_forecast_alert(ws: TransportWs, sentinels: set[str]) -> dict[str, Any]:
    while True:
        event = await next_event(ws, 60.0)
        labels = {lb["name"]: lb["value"] for lb in event["alert"]["labels"]}
        if labels.get("service") not in sentinels:
            return event


async def forecast_alerts(api: Api, tok: str, rule_id: str) -> list[dict[str, Any]]:
    listed = await api.data(ALERTS, {"filter": {"ruleId": rule_id}}, tok)
    return [e["node"] for e in listed["alerts"]["edges"]]


async def test_a_trending_series_raises_a_predictive_alert_live_and_tenants_never_meet(
    api: Api, server: Any, tenant: SeededTenant, other_tenant: SeededTenant
) -> None:
    created = (await api.data(RULE_FIELDS, {"rule": forecast_rule()}, tenant.admin))[
        "createAlertRule"
    ]
    assert created["kind"] == "FORECAST" and created["forecastOn"] == "BOUND"
    assert (created["horizonSeconds"], created["forecastLevel"]) == (7200.0, 0.8)
    theirs = (await api.data(RULE_FIELDS, {"rule": forecast_rule()}, other_tenant.admin))[
        "createAlertRule"
    ]
    service = f"db-{uuid.uuid4().hex[:6]}"
    async with TransportWs.connect(server.ws_url, tenant.viewer) as ws:
        await ws.subscribe(SUBSCRIBE)
        sentinels = await go_live(ws, api, tenant.admin)
        await ingest(api, tenant.token(Role.INGEST), *trending(service, seed=3))
        event = await next_forecast_alert(ws, sentinels)
    assert event["kind"] == "FIRED" and event["notify"] is True
    alert = event["alert"]
    assert alert["ruleId"] == created["id"] and alert["status"] == "FIRING"
    assert {"name": "service", "value": service} in alert["labels"]
    notes = {a["name"]: a["value"] for a in alert["annotations"]}
    crossing = datetime.fromisoformat(notes["forecast_crossing_at"])
    origin = datetime.fromisoformat(notes["forecast_origin"])
    assert timedelta(0) < crossing - origin <= timedelta(hours=2)
    assert float(notes["forecast_value"]) > 90.0 == float(notes["threshold"].split()[1])
    assert notes["forecast_on"] == "upper bound of the 80% interval"
    # The other tenant's identical rule, forecasting its own identical series: it gets
    # exactly its own alert. Its pass ran with the first tenant's series stored, so
    # seeing it would have raised a second one.
    other_service = f"db-{uuid.uuid4().hex[:6]}"
    async with TransportWs.connect(server.ws_url, other_tenant.viewer) as ws:
        await ws.subscribe(SUBSCRIBE)
        skip = await go_live(ws, api, other_tenant.admin)
        await ingest(api, other_tenant.token(Role.INGEST), *trending(other_service, seed=4))
        event = await next_forecast_alert(ws, skip)
    (their_alert,) = await forecast_alerts(api, other_tenant.viewer, theirs["id"])
    assert their_alert["id"] == event["alert"]["id"]
    assert {"name": "service", "value": other_service} in their_alert["labels"]
    assert their_alert["seriesId"] != alert["seriesId"]
    mine = await forecast_alerts(api, tenant.viewer, created["id"])
    assert [a["id"] for a in mine] == [alert["id"]]


async def test_forecast_rule_input_errors_name_each_field(api: Api, tenant: SeededTenant) -> None:
    bad = {**forecast_rule(), "op": "==", "horizon": None, "forecastLevel": 1.5}
    body = await api.post(CREATE_RULE, {"rule": bad}, tenant.admin)
    assert codes(body) == ["BAD_USER_INPUT"]
    fields = {e["field"] for e in body["errors"][0]["extensions"]["errors"]}
    assert {"op", "horizon", "forecast_level"} <= fields


async def test_the_service_resolves_when_new_points_stop_the_forecast_crossing(
    storage: Any, tenant: SeededTenant
) -> None:
    """The pipeline without a server (real MongoDB): ingestion starts a forecast pass;
    once the series turns flat again, the next due pass resolves the alert; a changed
    rule is due at once."""
    from tunelytics.domain.monitoring.alerting import AlertState, Rule
    from tunelytics.domain.monitoring.points import PointDraft
    from tunelytics.pubsub import LocalBroadcaster
    from tunelytics.services.pipeline import build_pipeline

    pipeline = build_pipeline(storage.db, LocalBroadcaster())
    alerts = pipeline.alerts
    data = {**forecast_rule(), "kind": "forecast", "severity": "warning"}
    rule = Rule.from_input(tenant.id, data, rule_id=f"rule-{uuid.uuid4().hex[:8]}")
    rule.updated_at = datetime.now(UTC)
    await alerts.repo.save_rule(tenant.id, rule)
    service = f"db-{uuid.uuid4().hex[:6]}"

    def drafts(points: list[dict[str, Any]]) -> list[PointDraft]:
        return [
            PointDraft(p["series"], (("service", service),),
                       int(datetime.fromisoformat(p["timestamp"]).timestamp() * 1000), p["value"])
            for p in points
        ]  # fmt: skip

    async def ingest_and_forecast(points: list[PointDraft]) -> None:
        await pipeline.monitoring.ingest(tenant.id, points, 30)
        await pipeline.monitoring.flush(everything=True)
        await alerts.forecasting[tenant.id]  # the pass ingestion started (and its reruns)

    rising = trending(service, seed=5)
    # The history ends 3 h ago: room for the flat points after it.
    shift = timedelta(hours=3)
    for p in rising:
        p["timestamp"] = (datetime.fromisoformat(p["timestamp"]) - shift).isoformat()
    await ingest_and_forecast(drafts(rising))
    (alert,) = [a for a in await alerts.repo.open_alerts(tenant.id) if a.rule_id == rule.id]
    assert alert.state is AlertState.FIRING and "forecast_crossing_at" in alert.annotations
    # Without new points nothing is due: the same alert, untouched.
    await alerts.check_forecasts(tenant.id)
    (same,) = [a for a in await alerts.repo.open_alerts(tenant.id) if a.rule_id == rule.id]
    assert same.updated_at == alert.updated_at
    # Load drops back to 60 for the last 3 hours; the rule's `every` passes (as if).
    last = datetime.fromisoformat(rising[-1]["timestamp"])
    flat = [
        point("disk_used_pct", last + timedelta(minutes=5 * (i + 1)), 60.0, service=service)
        for i in range(34)
    ]
    alerts.forecasted.clear()
    await ingest_and_forecast(drafts(flat))
    assert [a for a in await alerts.repo.open_alerts(tenant.id) if a.rule_id == rule.id] == []
    resolved = await alerts.repo.alert(tenant.id, alert.id)
    assert resolved is not None and resolved.state is AlertState.RESOLVED
    # A lower threshold (a changed rule) is due at once, with no new point and no wait.
    lower = Rule.from_input(tenant.id, {**data, "threshold": 55.0}, rule_id=rule.id)
    lower.updated_at = datetime.now(UTC)
    await alerts.repo.save_rule(tenant.id, lower)
    alerts.invalidate(tenant.id)
    await alerts.check_forecasts(tenant.id)
    (again,) = [a for a in await alerts.repo.open_alerts(tenant.id) if a.rule_id == rule.id]
    assert again.id != alert.id and again.fingerprint == alert.fingerprint


async def test_forecast_rules_on_business_series(storage: Any) -> None:
    """Rules on the series the product derives from listens (streams per hour of the
    tenant or an artist): a level the daily peak reaches fires, one far above it does
    not, an unknown artist says nothing, and each tenant's rule counts its own listens."""
    from collections import Counter

    from tunelytics.domain.demo import DemoSize
    from tunelytics.domain.monitoring.alerting import AlertState, Rule
    from tunelytics.pubsub import LocalBroadcaster
    from tunelytics.seeding import seed_demo
    from tunelytics.services.pipeline import build_pipeline

    size = DemoSize(artists=4, tracks=30, listeners=40, listens=6_000, days=28)
    busy, quiet = (f"t-{uuid.uuid4().hex[:10]}" for _ in range(2))
    demo = await seed_demo(storage, busy, name=busy, size=size, seed=8)
    await seed_demo(storage, quiet, name=quiet, size=DemoSize(4, 30, 40, 600, 28), seed=9)
    hourly = Counter(li.played_at.replace(minute=0, second=0, microsecond=0) for li in demo.listens)
    peak, typical = max(hourly.values()), float(np.median(list(hourly.values())))
    artist = demo.artists[0].id

    def rule(tenant: str, name: str, selector: str, threshold: float) -> Rule:
        data = {"name": name, "kind": "forecast", "selector": selector, "op": ">",
                "threshold": threshold, "horizon": "24h", "forecastOn": "mean",
                "every": "1m", "severity": "warning"}  # fmt: skip
        return Rule.from_input(tenant, data, rule_id=f"rule-{uuid.uuid4().hex[:8]}")

    rules = {
        "busy hours": rule(busy, "busy hours", "tunelytics_streams_per_hour", typical),
        "record hours": rule(busy, "record", "tunelytics_streams_per_hour", 3.0 * peak),
        "artist": rule(
            busy, "artist", f'tunelytics_artist_streams_per_hour{{artist="{artist}"}}', 0.5
        ),
        "nobody": rule(busy, "nobody", 'tunelytics_artist_streams_per_hour{artist="ar-none"}', 0.5),
        # The same level in the quiet tenant: its own, ten times fewer, listens.
        "quiet": rule(quiet, "quiet", "tunelytics_streams_per_hour", typical),
    }
    pipeline = build_pipeline(storage.db, LocalBroadcaster())
    alerts = pipeline.alerts
    for r in rules.values():
        r.updated_at = datetime.now(UTC)
        await alerts.repo.save_rule(r.tenant_id, r)
    await alerts.check_forecasts(busy)
    await alerts.check_forecasts(quiet)

    fired = {
        a.rule_id: a
        for t in (busy, quiet)
        for a in await alerts.repo.open_alerts(t)
        if a.state is AlertState.FIRING
    }
    assert rules["busy hours"].id in fired and rules["artist"].id in fired, fired
    assert rules["record hours"].id not in fired and rules["nobody"].id not in fired
    assert rules["quiet"].id not in fired
    tenant_alert, artist_alert = fired[rules["busy hours"].id], fired[rules["artist"].id]
    assert tenant_alert.series_id == "tunelytics_streams_per_hour:tenant"
    assert tenant_alert.tenant_id == busy and "forecast_crossing_at" in tenant_alert.annotations
    assert artist_alert.series_id == f"tunelytics_artist_streams_per_hour:artist:{artist}"
    assert artist_alert.labels.get("artist") == artist
