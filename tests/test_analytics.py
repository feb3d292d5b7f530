"""Analytics domain logic against straightforward computations over raw listens."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest
from scipy import stats

from tunelytics.domain.analytics import Activity, DayRange, ListenerProfile, ListenerTotals
from tunelytics.domain.analytics.abtest import compare_means, compare_rates
from tunelytics.domain.analytics.activity import PAID_PLANS, WINDOW_LOOKBACK, day_range
from tunelytics.domain.analytics.engagement import GroupBy, engagement
from tunelytics.domain.analytics.funnel import FunnelStep, funnel
from tunelytics.domain.analytics.retention import retention
from tunelytics.domain.analytics.segments import FEATURES, segments
from tunelytics.domain.demo import Demo, DemoSize, generate_demo
from tunelytics.domain.listening import Listen, Listener
from tunelytics.domain.predict.errors import NotEnoughData

END = datetime(2026, 11, 30, tzinfo=UTC)


def raw_activity(listeners: list[Listener], listens: list[Listen], r: DayRange) -> Activity:
    """The snapshot, built the obvious way from the raw listens."""
    profiles = {
        li.id: ListenerProfile(li.id, li.plan, li.country, li.signup_at) for li in listeners
    }
    in_range = [li for li in listens if r.start <= li.played_at < r.end]
    by_listener: dict[str, list[Listen]] = defaultdict(list)
    for li in in_range:
        by_listener[li.listener_id].append(li)
    totals = {
        who: ListenerTotals(
            listens=len(ls),
            ms_played=sum(li.ms_played for li in ls),
            skips=sum(1 for li in ls if li.skipped),
            evening=sum(1 for li in ls if li.played_at.hour >= 18),
            weekend=sum(1 for li in ls if li.played_at.weekday() >= 5),
            first_at=min(li.played_at for li in ls).replace(microsecond=(
                min(li.played_at for li in ls).microsecond // 1000 * 1000)),
        )
        for who, ls in by_listener.items()
    }  # fmt: skip
    days: dict[str, set[date]] = defaultdict(set)
    for li in listens:
        if r.start - WINDOW_LOOKBACK <= li.played_at < r.end:
            days[li.listener_id].add(li.played_at.date())
    return Activity(r, profiles, totals, {k: frozenset(v) for k, v in days.items()})


def naive_engagement(demo_listeners: list[Listener], listens: list[Listen], r: DayRange,
                     key: str | None) -> dict[str | None, dict[str, float | None]]:  # fmt: skip
    group_of = {li.id: (getattr(li, key) if key else None) for li in demo_listeners}
    by_day: dict[date, set[str]] = defaultdict(set)
    for li in listens:
        by_day[li.played_at.date()].add(li.listener_id)
    days = r.days
    result: dict[str | None, dict[str, float | None]] = {}
    for group in set(group_of.values()):
        members = {k for k, v in group_of.items() if v == group}

        def window(d: date, n: int, members: set[str] = members) -> int:
            seen: set[str] = set()
            for i in range(n):
                seen |= by_day.get(d - timedelta(days=i), set())
            return len(seen & members)

        dau = float(np.mean([window(d, 1) for d in days]))
        mau = float(np.mean([window(d, 30) for d in days]))
        mine = [
            li for li in listens if li.listener_id in members and r.start <= li.played_at < r.end
        ]
        if not mine and not any(window(d, 30) for d in days):
            continue
        result[group] = {
            "dau": dau,
            "wau": float(np.mean([window(d, 7) for d in days])),
            "mau": mau,
            "stickiness": dau / mau if mau else None,
            "listens": len(mine),
            "listeners": len({li.listener_id for li in mine}),
            "ms": sum(li.ms_played for li in mine),
            "skip_rate": sum(li.skipped for li in mine) / len(mine) if mine else None,
        }
    return result


@pytest.fixture(scope="module")
def demo() -> Demo:
    return generate_demo(DemoSize(artists=8, tracks=60, listeners=60, listens=3000, days=70),
                         seed=3, end=END)  # fmt: skip


def test_ranges_are_whole_utc_days_and_bad_ranges_are_refused() -> None:
    r = day_range(datetime(2026, 1, 1, 23, tzinfo=UTC), datetime(2026, 1, 2, 0, 30, tzinfo=UTC))
    assert (r.start, r.end) == (datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 3, tzinfo=UTC))
    assert len(day_range(END - timedelta(days=3), END).days) == 3
    for start, end in [
        (END, END),
        (END, END - timedelta(days=1)),
        (END - timedelta(days=400), END),
    ]:
        with pytest.raises(ValueError):
            day_range(start, end)


@pytest.mark.parametrize("group_by", [None, GroupBy.PLAN, GroupBy.COUNTRY])
@pytest.mark.parametrize("days", [1, 9, 40])
def test_engagement_matches_a_direct_count(demo: Demo, group_by: GroupBy | None, days: int) -> None:
    r = day_range(END - timedelta(days=days), END)
    got = engagement(raw_activity(demo.listeners, demo.listens, r), group_by)
    want = naive_engagement(demo.listeners, demo.listens, r, group_by.value if group_by else None)
    assert {e.group for e in got} == set(want)
    for e in got:
        w = want[e.group]
        assert e.dau == pytest.approx(w["dau"]) and e.wau == pytest.approx(w["wau"])
        assert e.mau == pytest.approx(w["mau"])
        assert e.stickiness == pytest.approx(w["stickiness"])
        assert (e.listens, e.listeners, e.listening_time_ms) == (
            w["listens"],
            w["listeners"],
            w["ms"],
        )
        assert e.skip_rate == pytest.approx(w["skip_rate"])
        assert e.dau <= e.wau <= e.mau


def test_retention_matches_a_direct_count(demo: Demo) -> None:
    r = day_range(demo.start, END)
    cohorts = retention(raw_activity(demo.listeners, demo.listens, r))
    assert [c.start for c in cohorts] == [r.start + timedelta(weeks=k) for k in range(len(cohorts))]
    assert sum(c.size for c in cohorts) == sum(
        1 for li in demo.listeners if r.start <= li.signup_at
    )
    checked = 0
    for c in cohorts:
        members = [
            li.id for li in demo.listeners if c.start <= li.signup_at < c.start + timedelta(weeks=1)
        ]
        assert c.size == len(members)
        full_weeks = (r.end - c.start) // timedelta(weeks=1) if members else 0
        assert len(c.weeks) == full_weeks
        for j, share in enumerate(c.weeks):
            low, high = c.start + timedelta(weeks=j), c.start + timedelta(weeks=j + 1)
            kept = {li.listener_id for li in demo.listens
                    if li.listener_id in members and low <= li.played_at < high}  # fmt: skip
            assert share == pytest.approx(len(kept) / len(members))
            checked += 1
    assert checked > 5


def test_funnel_matches_a_direct_count(demo: Demo) -> None:
    r = day_range(demo.start + timedelta(days=10), END)
    rows = funnel(raw_activity(demo.listeners, demo.listens, r), list(FunnelStep))
    people = [li for li in demo.listeners if r.start <= li.signup_at < r.end]
    mine = [li for li in demo.listens if r.start <= li.played_at < r.end]
    counts = [len(people)]
    people = [p for p in people if any(li.listener_id == p.id for li in mine)]
    counts.append(len(people))
    people = [p for p in people if sum(li.listener_id == p.id for li in mine) >= 10]
    counts.append(len(people))
    people = [
        p
        for p in people
        if len({li.played_at.date() for li in mine if li.listener_id == p.id}) >= 3
    ]
    counts.append(len(people))
    counts.append(sum(p.plan in PAID_PLANS for p in people))
    assert [row.listeners for row in rows] == counts
    assert counts[0] > counts[-1] > 0
    assert rows[0].from_previous is None
    assert rows[2].from_previous == pytest.approx(counts[2] / counts[1])
    assert rows[-1].from_start == pytest.approx(counts[-1] / counts[0])
    # The order asked is the order applied.
    reordered = funnel(raw_activity(demo.listeners, demo.listens, r), [FunnelStep.PAID_PLAN])
    assert reordered[0].listeners == sum(
        li.plan in PAID_PLANS for li in demo.listeners if r.start <= li.signup_at < r.end
    )
    with pytest.raises(ValueError):
        funnel(raw_activity(demo.listeners, demo.listens, r), [FunnelStep.SIGNED_UP] * 2)


def test_segments_partition_active_listeners_and_describe_their_centroids(demo: Demo) -> None:
    r = day_range(demo.start, END)
    activity = raw_activity(demo.listeners, demo.listens, r)
    found = segments(activity)
    assert 2 <= found.k <= 8 and found.features == FEATURES
    members = [m for s in found.segments for m in s.listener_ids]
    assert sorted(members) == sorted(activity.totals)
    for s in found.segments:
        assert s.size == len(s.listener_ids) and "listeners" in s.description
        skip_rates = [activity.totals[m].skips / activity.totals[m].listens for m in s.listener_ids]
        assert s.centroid[FEATURES.index("skip_rate")] == pytest.approx(np.mean(skip_rates))
        paid = np.mean([activity.listeners[m].plan in PAID_PLANS for m in s.listener_ids])
        assert s.centroid[FEATURES.index("paid")] == pytest.approx(paid)
    assert segments(activity, k=3).k == 3
    small = Activity(
        r, activity.listeners, dict(list(activity.totals.items())[:5]), activity.days_active
    )
    with pytest.raises(NotEnoughData):
        segments(small)


def test_segment_words_follow_the_centroid() -> None:
    from collections import Counter

    from tunelytics.domain.analytics.segments import describe

    z = np.array([1.2, 0.1, -0.9, 1.0, 0.0, 0.0, 0.8])
    assert describe(z, Counter({"premium": 3, "free": 1})) == (
        "evening heavy listeners, low skip rate, mostly premium"
    )
    z = np.array([-1.0, -1.0, 0.9, 0.0, 0.0, -0.7, -1.0])
    assert describe(z, Counter({"free": 1, "premium": 1, "family": 1})) == (
        "light listeners, on few days, high skip rate, short plays, mixed plans"
    )


def test_welch_matches_scipy() -> None:
    rng = np.random.default_rng(0)
    a, b = list(rng.poisson(20, 40).astype(float)), list(rng.poisson(24, 25).astype(float))
    got = compare_means(a, b, 0.9)
    want = stats.ttest_ind(b, a, equal_var=False)
    ci = want.confidence_interval(0.9)
    assert got.p_value == pytest.approx(want.pvalue)
    assert (got.lower, got.upper) == (pytest.approx(ci.low), pytest.approx(ci.high))
    assert got.effect == pytest.approx(np.mean(b) - np.mean(a))
    pooled = np.sqrt((39 * np.var(a, ddof=1) + 24 * np.var(b, ddof=1)) / 63)
    assert got.cohens_d == pytest.approx(got.effect / pooled)
    assert got.lift == pytest.approx(got.effect / np.mean(a))
    with pytest.raises(NotEnoughData):
        compare_means([1.0, 2.0], b, 0.95)
    with pytest.raises(NotEnoughData):
        compare_means([3.0] * 6, [3.0] * 6, 0.95)


def test_two_proportions_match_the_chi_square_test() -> None:
    got = compare_rates(30, 200, 52, 210, 0.95)
    table = [[30, 170], [52, 158]]
    _chi2, p, _, _ = stats.chi2_contingency(table, correction=False)
    assert got.p_value == pytest.approx(p)
    pa, pb = 30 / 200, 52 / 210
    half = 1.959963984540054 * np.sqrt(pa * (1 - pa) / 200 + pb * (1 - pb) / 210)
    assert (got.lower, got.upper) == (pytest.approx(pb - pa - half), pytest.approx(pb - pa + half))
    with pytest.raises(NotEnoughData, match="group A"):
        compare_rates(2, 200, 52, 210, 0.95)
