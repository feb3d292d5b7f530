"""GraphQL types and root fields of metric ingestion and series."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, NewType

import strawberry
from strawberry import Info
from strawberry.types.arguments import InputContext

from tunelytics.domain.monitoring import points as domain
from tunelytics.resolvers import monitoring as resolvers
from tunelytics.resolvers.context import Context
from tunelytics.schema.connections import Connection, connection

CtxInfo = Info[Context, None]


def _parse_value(raw: Any) -> object:
    # Kept as sent: the domain rejects a non-finite value per item instead of the whole
    # request failing coercion (JSON has no NaN, but "NaN", "1e999" and 1e999 do arrive).
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise ValueError("MetricValue must be a number or a numeric string")
    return raw


def _serialize_value(value: Any) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None


MetricValue = NewType("MetricValue", object)

# Registered through StrawberryConfig.scalar_map (schema/root.py), the non-deprecated way.
METRIC_VALUE = strawberry.scalar(
    name="MetricValue",
    description=(
        "A number, or a string holding one. Non-finite values (NaN, Infinity, numbers "
        "beyond a double) are rejected per point."
    ),
    serialize=_serialize_value,
    parse_value=_parse_value,
)


@strawberry.input
class LabelInput:
    name: str
    value: str


@strawberry.input
class MetricPointInput:
    series: str = strawberry.field(description="The metric name, e.g. api_latency_ms.")
    timestamp: datetime
    value: MetricValue
    labels: list[LabelInput] = strawberry.field(default_factory=list)

    def to_domain(self) -> domain.PointDraft:
        at = self.timestamp if self.timestamp.tzinfo else self.timestamp.replace(tzinfo=UTC)
        return domain.PointDraft(
            name=self.series,
            labels=tuple((label.name, label.value) for label in self.labels),
            at_ms=int(at.timestamp() * 1000),
            value=self.value,
        )


def _point_from_input(
    cls: type[MetricPointInput], value: Mapping[str, Any], context: InputContext
) -> MetricPointInput:
    """A point from its input value, as graphql-core coerced it (names checked, the
    scalars parsed). Strawberry's generic conversion resolves each field's type again
    for every item, several times the cost of the rest of the request on a batch of
    1,000 points; this type's fields are all leaves but `labels`, built here."""
    return cls(
        series=value["series"],
        timestamp=value["timestamp"],
        value=value["value"],
        labels=[LabelInput(name=label["name"], value=label["value"]) for label in value["labels"]],
    )


MetricPointInput.__strawberry_definition__.from_input = _point_from_input  # type: ignore[attr-defined]


@strawberry.input
class MetricSeriesFilter:
    name: str | None = None
    labels: list[LabelInput] = strawberry.field(default_factory=list)

    def to_domain(self) -> domain.SeriesFilter:
        return domain.SeriesFilter(
            name=self.name, labels=tuple((label.name, label.value) for label in self.labels)
        )


PointRejectionReason = strawberry.enum(domain.Reason, name="PointRejectionReason")


@strawberry.type
class Label:
    name: str
    value: str


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


@strawberry.type
class MetricPoint:
    at: datetime
    value: float
    score: float = strawberry.field(description="Anomaly score in [0, 1] when it arrived.")


@strawberry.type(description="The points of one time bucket, summarised.")
class PointBucket:
    start: datetime
    count: int
    min: float
    max: float
    mean: float
    last: float
    max_score: float


@strawberry.type
class SeriesPoints:
    downsampled: bool
    points: list[MetricPoint] = strawberry.field(description="Empty when downsampled.")
    buckets: list[PointBucket] = strawberry.field(description="Empty unless downsampled.")


@strawberry.type
class MetricSeries:
    id: strawberry.ID
    name: str
    labels: list[Label]
    last_at: datetime | None
    last_value: float | None
    last_score: float | None
    entity: strawberry.Private[domain.MetricSeries]

    @classmethod
    def of(cls, series: domain.MetricSeries) -> MetricSeries:
        return cls(
            id=strawberry.ID(series.id),
            name=series.name,
            labels=[Label(name=k, value=v) for k, v in series.labels],
            last_at=_at(series.last_at_ms) if series.last_at_ms is not None else None,
            last_value=series.last_value,
            last_score=series.last_score,
            entity=series,
        )

    @strawberry.field(
        description="Points with their scores in [from, to) (default: the series' last day); "
        "summarised into at most maxPoints time buckets when there are more."
    )
    async def points(
        self,
        info: CtxInfo,
        from_: Annotated[datetime | None, strawberry.argument(name="from")] = None,
        to: datetime | None = None,
        max_points: int = 500,
    ) -> SeriesPoints:
        limit = resolvers.check_max_points(max_points)
        start, end, found = await resolvers.points_of(info, self.entity, from_, to)
        if len(found) <= limit:
            return SeriesPoints(
                downsampled=False,
                points=[MetricPoint(at=_at(p.at_ms), value=p.value, score=p.score) for p in found],
                buckets=[],
            )
        buckets = domain.downsample(found, start, end, limit)
        return SeriesPoints(
            downsampled=True,
            points=[],
            buckets=[
                PointBucket(
                    start=_at(b.start_ms),
                    count=b.count,
                    min=b.min,
                    max=b.max,
                    mean=b.mean,
                    last=b.last,
                    max_score=b.max_score,
                )
                for b in buckets
            ],
        )


@strawberry.type
class SeriesScore:
    series_id: strawberry.ID
    name: str
    labels: list[Label]
    score: float = strawberry.field(description="The score of the series' last point stored.")


@strawberry.type
class RejectedPoint:
    index: int = strawberry.field(description="Position of the point in the input list.")
    field: str
    code: str = strawberry.field(description="Always BAD_USER_INPUT; `reason` says which rule.")
    reason: PointRejectionReason  # type: ignore[valid-type]
    message: str


@strawberry.type
class IngestMetricsPayload:
    stored: int
    series: list[SeriesScore]
    rejected: list[RejectedPoint]


@strawberry.type
class MonitoringQuery:
    @strawberry.field(description="Your metric series by name, a page at a time.")
    async def metric_series(
        self,
        info: CtxInfo,
        filter: MetricSeriesFilter | None = None,
        first: int = 20,
        after: str | None = None,
    ) -> Connection[MetricSeries]:
        where = (filter or MetricSeriesFilter()).to_domain()
        page = await resolvers.series_page(info, where, first, after)
        return connection(page, "NAME", MetricSeries.of, has_previous=after is not None)

    @strawberry.field(description="One series by its ID.")
    async def series(self, info: CtxInfo, id: strawberry.ID) -> MetricSeries | None:
        found = await resolvers.one_series(info, id)
        return MetricSeries.of(found) if found else None


@strawberry.type
class MonitoringMutation:
    @strawberry.mutation(
        description="Store metric points, each scored by its series' anomaly detector; "
        "invalid points are reported one by one and the rest stored."
    )
    async def ingest_metrics(
        self, info: CtxInfo, points: list[MetricPointInput]
    ) -> IngestMetricsPayload:
        result = await resolvers.ingest_metrics(info, [p.to_domain() for p in points])
        return IngestMetricsPayload(
            stored=result.stored,
            series=[
                SeriesScore(
                    series_id=strawberry.ID(sid),
                    name=key.name,
                    labels=[Label(name=k, value=v) for k, v in key.labels],
                    score=score,
                )
                for sid, (key, score) in result.scores.items()
            ],
            rejected=[
                RejectedPoint(
                    index=r.index,
                    field=r.field,
                    code="BAD_USER_INPUT",
                    reason=r.reason,
                    message=r.message,
                )
                for r in result.rejected
            ],
        )
