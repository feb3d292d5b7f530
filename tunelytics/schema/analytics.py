"""GraphQL types of business analytics (issue 6.5): Query.analytics(from, to) { ... }.

Definitions live in the domain modules (tunelytics/domain/analytics/): DAU, WAU, MAU and
stickiness in engagement.py, cohorts in retention.py, the funnel steps in funnel.py,
segments in segments.py, the tests in abtest.py.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Annotated

import strawberry
from strawberry import Info

from tunelytics.domain.analytics import DayRange
from tunelytics.domain.analytics import abtest as domain_abtest
from tunelytics.domain.analytics import engagement as domain_engagement
from tunelytics.domain.analytics import funnel as domain_funnel
from tunelytics.domain.analytics import retention as domain_retention
from tunelytics.domain.analytics import segments as domain_segments
from tunelytics.domain.auth import Permission
from tunelytics.resolvers import analytics as resolvers
from tunelytics.resolvers.context import Context

CtxInfo = Info[Context, None]

EngagementGroupBy = strawberry.enum(domain_engagement.GroupBy, name="EngagementGroupBy")
FunnelStep = strawberry.enum(
    domain_funnel.FunnelStep,
    description="SIGNED_UP in the range, FIRST_LISTEN, TEN_LISTENS, THREE_DAYS (distinct "
    "UTC days with a listen), PAID_PLAN (premium, family or student now).",
)
AbMetric = strawberry.enum(domain_abtest.Metric, name="AbMetric")


@strawberry.enum
class CohortPeriod(Enum):
    WEEK = "WEEK"


@strawberry.type(description="Engagement of one group (plan or country) or of everyone.")
class EngagementGroup:
    group: str | None = strawberry.field(description="The plan or country; null when ungrouped.")
    dau: float = strawberry.field(description="Mean daily distinct listeners over the range.")
    wau: float = strawberry.field(
        description="Mean over the range's days of the distinct listeners in the trailing 7 days."
    )
    mau: float = strawberry.field(
        description="Mean over the range's days of the distinct listeners in the trailing 30 days."
    )
    stickiness: float | None = strawberry.field(description="DAU / MAU.")
    listens: int
    listeners: int = strawberry.field(description="Distinct listeners with a listen.")
    listens_per_listener: float | None
    listening_time_ms: float = strawberry.field(description="Sum of ms played (a Float: "
        "it outgrows a 32-bit Int).")  # fmt: skip
    skip_rate: float | None = strawberry.field(description="Skipped listens / listens.")

    @staticmethod
    def of(e: domain_engagement.Engagement) -> EngagementGroup:
        return EngagementGroup(
            group=e.group,
            dau=e.dau,
            wau=e.wau,
            mau=e.mau,
            stickiness=e.stickiness,
            listens=e.listens,
            listeners=e.listeners,
            listens_per_listener=e.listens_per_listener,
            listening_time_ms=float(e.listening_time_ms),
            skip_rate=e.skip_rate,
        )


@strawberry.type
class Cohort:
    start: datetime
    size: int
    weeks: list[float] = strawberry.field(
        description="Share of the cohort with a listen in week 0 (signup week), 1, 2, ..."
    )


@strawberry.type
class Retention:
    period: CohortPeriod
    cohorts: list[Cohort]


@strawberry.type
class FunnelStepResult:
    step: FunnelStep  # type: ignore[valid-type]
    listeners: int
    from_previous: float | None
    from_start: float | None


@strawberry.type
class Segment:
    id: int
    size: int
    description: str
    features: list[str]
    centroid: list[float] = strawberry.field(
        description="The segment's mean of each feature, in `features` order, in its own units."
    )


@strawberry.type
class Segmentation:
    k: int
    silhouette: float
    features: list[str]
    segments: list[Segment]


@strawberry.input(description="Listeners by ID, or by a filter on plan and/or country.")
class ListenerGroupInput:
    ids: list[strawberry.ID] | None = None
    plan: str | None = None
    country: str | None = None

    def to_domain(self) -> resolvers.ListenerGroup:
        ids = [str(i) for i in self.ids] if self.ids is not None else None
        return resolvers.ListenerGroup(ids, self.plan, self.country)


@strawberry.type(description="B compared with A; effect = B - A.")
class AbTest:
    metric: AbMetric  # type: ignore[valid-type]
    test: str = strawberry.field(description='"welch_t" or "two_proportion_z".')
    value_a: float
    value_b: float
    effect: float
    lower: float
    upper: float
    level: float
    p_value: float
    lift: float | None
    cohens_d: float | None
    n_a: int = strawberry.field(description="Listeners (means) or listens (SKIP_RATE).")
    n_b: int


@strawberry.type(
    description="Business analytics over whole UTC days [from, to). `segments` and `abTest` "
    "are nullable: a refusal there (NOT_ENOUGH_DATA) leaves the other fields' data intact."
)
class Analytics:
    range: strawberry.Private[DayRange]

    @strawberry.field(name="from")
    def start(self) -> datetime:
        return self.range.start

    @strawberry.field(name="to")
    def end(self) -> datetime:
        return self.range.end

    @strawberry.field
    async def engagement(
        self,
        info: CtxInfo,
        group_by: EngagementGroupBy | None = None,  # type: ignore[valid-type]
    ) -> list[EngagementGroup]:
        snap = await resolvers.snapshot(info, self.range)
        rows = domain_engagement.engagement(snap.activity, group_by)
        return [EngagementGroup.of(e) for e in rows]

    @strawberry.field(description="Weekly signup cohorts and their retention.")
    async def retention(self, info: CtxInfo, cohort: CohortPeriod = CohortPeriod.WEEK) -> Retention:
        snap = await resolvers.snapshot(info, self.range)
        cohorts = await resolvers.computed(
            snap, "retention", lambda: domain_retention.retention(snap.activity)
        )
        return Retention(
            period=cohort,
            cohorts=[Cohort(start=c.start, size=c.size, weeks=c.weeks) for c in cohorts],
        )

    @strawberry.field(description="Listeners who signed up in the range, step by step.")
    async def funnel(
        self,
        info: CtxInfo,
        steps: list[FunnelStep] | None = None,  # type: ignore[valid-type]
    ) -> list[FunnelStepResult]:
        snap = await resolvers.snapshot(info, self.range)
        chosen = list(steps) if steps is not None else domain_funnel.DEFAULT_STEPS
        rows = resolvers.run(lambda: domain_funnel.funnel(snap.activity, chosen))
        return [
            FunnelStepResult(
                step=r.step,
                listeners=r.listeners,
                from_previous=r.from_previous,
                from_start=r.from_start,
            )
            for r in rows
        ]

    @strawberry.field(description="k-means segments of behaviour; k by silhouette if not given.")
    async def segments(self, info: CtxInfo, k: int | None = None) -> Segmentation | None:
        snap = await resolvers.snapshot(info, self.range)
        found = await resolvers.computed(
            snap, ("segments", k), lambda: domain_segments.segments(snap.activity, k)
        )
        return Segmentation(
            k=found.k,
            silhouette=found.silhouette,
            features=list(found.features),
            segments=[
                Segment(
                    id=s.id,
                    size=s.size,
                    description=s.description,
                    features=list(found.features),
                    centroid=s.centroid,
                )
                for s in found.segments
            ],
        )

    @strawberry.field(description="Compare two listener groups on a metric over the range.")
    async def ab_test(
        self,
        info: CtxInfo,
        group_a: ListenerGroupInput,
        group_b: ListenerGroupInput,
        metric: AbMetric,  # type: ignore[valid-type]
        level: float = 0.95,
    ) -> AbTest | None:
        snap = await resolvers.snapshot(info, self.range)
        c = resolvers.ab_test(
            snap.activity, group_a.to_domain(), group_b.to_domain(), metric, level
        )
        return AbTest(
            metric=metric,
            test=c.test,
            value_a=c.value_a,
            value_b=c.value_b,
            effect=c.effect,
            lower=c.lower,
            upper=c.upper,
            level=c.level,
            p_value=c.p_value,
            lift=c.lift,
            cohens_d=c.cohens_d,
            n_a=c.n_a,
            n_b=c.n_b,
        )


@strawberry.type
class AnalyticsQuery:
    @strawberry.field(
        description="Business analytics over whole UTC days from `from` (default: 28 days "
        "before `to`) to `to` (default: now), at most 366 days. Viewers and up."
    )
    async def analytics(
        self,
        info: CtxInfo,
        from_: Annotated[datetime | None, strawberry.argument(name="from")] = None,
        to: datetime | None = None,
    ) -> Analytics:
        info.context.authorize(Permission.READ)
        return Analytics(range=resolvers.analytics_range(from_, to))
