"""Analytics through the real server on nx-27017: exact against the raw documents, cache
invalidation by new listens, roles, tenancy and refusals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.conftest import SeededTenant
from tests.helpers import Api, codes, record_listens
from tests.test_analytics import naive_engagement, raw_activity
from tunelytics.domain.analytics import day_range
from tunelytics.domain.auth import Role
from tunelytics.storage import Storage
from tunelytics.storage.analytics import AnalyticsRepository

ENGAGEMENT = """query($from: DateTime, $to: DateTime, $groupBy: EngagementGroupBy) {
  analytics(from: $from, to: $to) { from to
    engagement(groupBy: $groupBy) { group dau wau mau stickiness listens listeners
      listensPerListener listeningTimeMs skipRate } } }"""
EVERYTHING = """query($from: DateTime, $to: DateTime) {
  analytics(from: $from, to: $to) {
    retention(cohort: WEEK) { cohorts { start size weeks } }
    funnel { step listeners fromPrevious fromStart }
    segments { k silhouette segments { id size description features centroid } } } }"""
AB = """query($from: DateTime, $to: DateTime, $a: ListenerGroupInput!, $b: ListenerGroupInput!,
  $metric: AbMetric!) { analytics(from: $from, to: $to) {
    abTest(groupA: $a, groupB: $b, metric: $metric) {
      test valueA valueB effect lower upper level pValue lift cohensD nA nB } } }"""


def span(t: SeededTenant) -> dict[str, str]:
    return {"from": t.demo.start.isoformat(), "to": t.demo.end.isoformat()}


def check_engagement(rows: list[dict[str, Any]], want: dict[str | None, dict[str, Any]]) -> None:
    assert {r["group"] for r in rows} == set(want)
    for r in rows:
        w = want[r["group"]]
        assert r["dau"] == pytest.approx(w["dau"]) and r["wau"] == pytest.approx(w["wau"])
        assert r["mau"] == pytest.approx(w["mau"])
        assert (r["listens"], r["listeners"]) == (w["listens"], w["listeners"])
        assert r["listeningTimeMs"] == w["ms"] and r["skipRate"] == pytest.approx(w["skip_rate"])


async def test_the_database_snapshot_equals_the_raw_documents(
    storage: Storage, tenant: SeededTenant, other_tenant: SeededTenant
) -> None:
    repo = AnalyticsRepository(storage.db)
    for seeded in (tenant, other_tenant):  # the same listener IDs, different listens
        demo = seeded.demo
        for start in (demo.start, demo.start + timedelta(days=12, hours=5)):
            r = day_range(start, demo.end - timedelta(hours=30))
            got = await repo.activity(seeded.id, r)
            want = raw_activity(demo.listeners, demo.listens, r)
            assert got.listeners == want.listeners
            assert got.totals == want.totals
            assert got.days_active == want.days_active
            assert got.totals, "the window holds listens"


@pytest.mark.parametrize("group_by", [None, "PLAN", "COUNTRY"])
async def test_engagement_is_exact_and_readable_by_viewers(
    api: Api, tenant: SeededTenant, group_by: str | None
) -> None:
    body = await api.data(ENGAGEMENT, {**span(tenant), "groupBy": group_by}, tenant.viewer)
    result = body["analytics"]
    r = day_range(tenant.demo.start, tenant.demo.end)
    assert datetime.fromisoformat(result["from"]) == r.start
    key = group_by.lower() if group_by else None
    check_engagement(
        result["engagement"], naive_engagement(tenant.demo.listeners, tenant.demo.listens, r, key)
    )


async def test_retention_funnel_and_segments_through_the_api(
    api: Api, tenant: SeededTenant
) -> None:
    from tunelytics.domain.analytics.funnel import DEFAULT_STEPS, funnel
    from tunelytics.domain.analytics.retention import retention

    body = await api.data(EVERYTHING, span(tenant), tenant.token(Role.ANALYST))
    result = body["analytics"]
    raw = raw_activity(tenant.demo.listeners, tenant.demo.listens, day_range(
        tenant.demo.start, tenant.demo.end))  # fmt: skip
    want = retention(raw)
    got = result["retention"]["cohorts"]
    assert [(datetime.fromisoformat(c["start"]), c["size"]) for c in got] == [
        (c.start, c.size) for c in want
    ]
    assert [c["weeks"] for c in got] == [pytest.approx(c.weeks) for c in want]
    assert [s["listeners"] for s in result["funnel"]] == [
        s.listeners for s in funnel(raw, DEFAULT_STEPS)
    ]
    segs = result["segments"]
    assert sum(s["size"] for s in segs["segments"]) == len(raw.totals)
    assert all(s["description"] and len(s["centroid"]) == 7 for s in segs["segments"])


async def test_a_new_listen_invalidates_the_cached_analytics(
    api: Api, tenant: SeededTenant
) -> None:
    variables = {"from": tenant.demo.start.isoformat(), "to": datetime.now(UTC).isoformat()}
    before = (await api.data(ENGAGEMENT, variables, tenant.viewer))["analytics"]["engagement"][0]
    again = (await api.data(ENGAGEMENT, variables, tenant.viewer))["analytics"]["engagement"][0]
    assert again == before
    track = tenant.demo.tracks[0]
    listen = {
        "listenerId": tenant.demo.listeners[0].id,
        "trackId": track.id,
        "playedAt": (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
        "msPlayed": min(track.duration_ms, 45_000),
        "skipped": True,
    }
    await record_listens(api, tenant.admin, [listen])
    after = (await api.data(ENGAGEMENT, variables, tenant.viewer))["analytics"]["engagement"][0]
    assert after["listens"] == before["listens"] + 1
    assert after["listeningTimeMs"] == before["listeningTimeMs"] + listen["msPlayed"]
    # A listener's new plan moves them between the PLAN groups at once.
    by_plan = {**variables, "groupBy": "PLAN"}
    rows = (await api.data(ENGAGEMENT, by_plan, tenant.viewer))["analytics"]["engagement"]
    who = tenant.demo.listeners[0]
    new_plan = "student" if who.plan != "student" else "family"
    listeners = {r["group"]: r["listeners"] for r in rows}
    upsert = """mutation($l: [ListenerInput!]!) { upsertListeners(listeners: $l) {
      listeners { id } rejected { index } } }"""
    await api.data(upsert, {"l": [{"id": who.id, "country": who.country, "plan": new_plan}]},
                   tenant.admin)  # fmt: skip
    rows = (await api.data(ENGAGEMENT, by_plan, tenant.viewer))["analytics"]["engagement"]
    moved = {r["group"]: r["listeners"] for r in rows}
    assert moved.get(new_plan, 0) == listeners.get(new_plan, 0) + 1
    assert moved.get(who.plan, 0) == listeners[who.plan] - 1


async def test_ab_test_compares_plans_and_refuses_tiny_groups(
    api: Api, tenant: SeededTenant
) -> None:
    from tunelytics.domain.analytics.abtest import compare_means

    ids = sorted(li.id for li in tenant.demo.listeners)
    a, b = ids[: len(ids) // 2], ids[len(ids) // 2 :]
    variables = {**span(tenant), "a": {"ids": a}, "b": {"ids": b}}
    body = await api.data(AB, {**variables, "metric": "LISTENS_PER_LISTENER"}, tenant.viewer)
    got = body["analytics"]["abTest"]
    counts = {i: sum(li.listener_id == i for li in tenant.demo.listens) for i in ids}
    want = compare_means([counts[i] for i in a], [counts[i] for i in b], 0.95)
    assert got["test"] == "welch_t" and (got["nA"], got["nB"]) == (len(a), len(b))
    assert got["effect"] == pytest.approx(want.effect)
    assert got["pValue"] == pytest.approx(want.p_value)
    assert got["lower"] < got["effect"] < got["upper"]

    body = await api.data(AB, {**variables, "metric": "SKIP_RATE"}, tenant.viewer)
    got = body["analytics"]["abTest"]
    skips = sum(li.skipped for li in tenant.demo.listens if li.listener_id in a)
    listens = sum(li.listener_id in a for li in tenant.demo.listens)
    assert got["test"] == "two_proportion_z" and got["nA"] == listens
    assert got["valueA"] == pytest.approx(skips / listens)

    tiny = {**variables, "a": {"ids": ids[:2]}, "metric": "LISTENING_TIME"}
    body = await api.post(AB, tiny, tenant.viewer)
    assert codes(body) == ["BAD_USER_INPUT"], body
    assert body["errors"][0]["extensions"]["reason"] == "NOT_ENOUGH_DATA"
    assert body["data"] == {"analytics": {"abTest": None}}


async def test_bad_ranges_and_inputs_are_clear_errors(api: Api, tenant: SeededTenant) -> None:
    now = datetime.now(UTC)
    cases: list[tuple[str, dict[str, Any], str]] = [
        (ENGAGEMENT, {"from": now.isoformat(), "to": now.isoformat()}, "before"),
        (ENGAGEMENT, {"from": now.isoformat(), "to": (now - timedelta(days=2)).isoformat()},
         "before"),
        (ENGAGEMENT, {"from": (now - timedelta(days=400)).isoformat()}, "at most 366"),
        (AB, {"a": {"ids": ["nobody"]}, "b": {"plan": "free"}, "metric": "SKIP_RATE"},
         "unknown listeners"),
        (AB, {"a": {"plan": "free"}, "b": {"plan": "free"}, "metric": "SKIP_RATE"}, "share"),
        (AB, {"a": {}, "b": {"plan": "free"}, "metric": "SKIP_RATE"}, "either"),
    ]  # fmt: skip
    for query, variables, words in cases:
        body = await api.post(query, variables, tenant.viewer)
        assert codes(body) == ["BAD_USER_INPUT"], (variables, body)
        assert words in body["errors"][0]["message"], body
    body = await api.post(ENGAGEMENT, {}, tenant.token(Role.INGEST))
    assert codes(body) == ["FORBIDDEN"]
    assert codes(await api.post(ENGAGEMENT, {})) == ["UNAUTHENTICATED"]


async def test_analytics_of_one_tenant_never_count_another(
    api: Api, tenant: SeededTenant, other_tenant: SeededTenant
) -> None:
    r = day_range(tenant.demo.start, tenant.demo.end)
    for seeded in (tenant, other_tenant):  # the same listener IDs
        body = await api.data(ENGAGEMENT, span(seeded), seeded.viewer)
        want = naive_engagement(seeded.demo.listeners, seeded.demo.listens, r, None)
        check_engagement(body["analytics"]["engagement"], want)
    # A listen recorded for B changes B's numbers, not A's.
    a_before = (await api.data(ENGAGEMENT, span(tenant), tenant.viewer))["analytics"]
    track = other_tenant.demo.tracks[0]
    await record_listens(api, other_tenant.admin, [{
        "listenerId": other_tenant.demo.listeners[0].id, "trackId": track.id,
        "playedAt": (tenant.demo.end - timedelta(hours=3)).isoformat(),
        "msPlayed": 1000, "skipped": True}])  # fmt: skip
    a_after = (await api.data(ENGAGEMENT, span(tenant), tenant.viewer))["analytics"]
    assert a_after == a_before
    b_after = (await api.data(ENGAGEMENT, span(other_tenant), other_tenant.viewer))["analytics"]
    assert b_after["engagement"][0]["listens"] == len(other_tenant.demo.listens) + 1
    # B's group filter cannot reach A's listeners either: only B's own are members.
    ids = sorted(li.id for li in tenant.demo.listeners)
    body = await api.data(AB, {**span(tenant), "a": {"ids": ids[:5]}, "b": {"ids": ids[5:]},
                               "metric": "LISTENS_PER_LISTENER"}, other_tenant.viewer)  # fmt: skip
    counts = {i: sum(li.listener_id == i for li in other_tenant.demo.listens) for i in ids}
    counts[other_tenant.demo.listeners[0].id] += 1  # the listen recorded above
    got = body["analytics"]["abTest"]
    assert got["valueA"] == pytest.approx(sum(counts[i] for i in ids[:5]) / 5)


README_QUERY = """query($from: DateTime, $to: DateTime) {
  analytics(from: $from, to: $to) {
    from to
    engagement(groupBy: PLAN) { group dau wau mau stickiness listens listeners
      listeningTimeMs skipRate }
    retention(cohort: WEEK) { cohorts { start size weeks } }
    funnel(steps: [SIGNED_UP, FIRST_LISTEN, TEN_LISTENS, THREE_DAYS, PAID_PLAN]) {
      step listeners fromPrevious fromStart }
    segments { k silhouette segments { id size description features centroid } }
    abTest(groupA: {plan: "free"}, groupB: {plan: "premium"}, metric: LISTENS_PER_LISTENER) {
      test valueA valueB effect lower upper pValue lift cohensD nA nB } } }"""


async def test_the_readme_query_answers_in_one_request(api: Api, tenant: SeededTenant) -> None:
    body = await api.post(README_QUERY, span(tenant), tenant.viewer)
    result = body["data"]["analytics"]
    # 10 listeners: too few per plan for a test. The refusal nulls abTest alone.
    assert [e["path"] for e in body["errors"]] == [["analytics", "abTest"]], body
    assert body["errors"][0]["extensions"]["reason"] == "NOT_ENOUGH_DATA"
    assert result["abTest"] is None
    plans = {li.plan for li in tenant.demo.listeners}
    assert {row["group"] for row in result["engagement"]} == plans
    assert sum(row["listens"] for row in result["engagement"]) == len(tenant.demo.listens)
    assert result["funnel"][0]["step"] == "SIGNED_UP"
    assert sum(s["size"] for s in result["segments"]["segments"]) == len(
        {li.listener_id for li in tenant.demo.listens}
    )
