"""Metric ingestion and series reads: auth, limits and tenancy around the pipeline."""

from __future__ import annotations

from datetime import UTC, datetime

from strawberry import Info

from tunelytics.domain.auth import Permission
from tunelytics.domain.monitoring.points import (
    MAX_FUTURE_MS,
    MetricSeries,
    PointDraft,
    SeriesFilter,
    StoredPoint,
)
from tunelytics.domain.paging import Page
from tunelytics.resolvers.context import Context
from tunelytics.resolvers.errors import BadUserInput, NotFound
from tunelytics.resolvers.pagination import check_batch, check_first, decode_cursor
from tunelytics.resolvers.tenancy import require_registered_tenant
from tunelytics.services.monitoring import IngestResult, MonitoringService

CtxInfo = Info[Context, None]
# A chart of a long range gets at most this many buckets; reads stop at this many points.
MAX_POINTS = 2_000
MAX_READ = 200_000


def monitoring(info: CtxInfo) -> MonitoringService:
    service = info.context.services.monitoring
    if service is None:
        raise NotFound("monitoring is not enabled on this server")
    return service


def epoch_ms(moment: datetime) -> int:
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
    return int(moment.timestamp() * 1000)


async def ingest_metrics(info: CtxInfo, drafts: list[PointDraft]) -> IngestResult:
    ctx = info.context
    principal = ctx.authorize(Permission.WRITE_METRICS)
    check_batch(len(drafts), ctx.settings.limits.max_batch)
    tenant = await require_registered_tenant(ctx)
    return await monitoring(info).ingest(principal.tenant_id, drafts, tenant.retention_days)


async def series_page(
    info: CtxInfo, where: SeriesFilter, first: int, after: str | None
) -> Page[MetricSeries]:
    ctx = info.context
    principal = ctx.authorize(Permission.READ)
    check_first(first, ctx.settings.limits.max_page)
    position = decode_cursor(after, "NAME")
    return await monitoring(info).series.page(principal.tenant_id, where, position, first)


async def one_series(info: CtxInfo, series_id: str) -> MetricSeries | None:
    principal = info.context.authorize(Permission.READ)
    found = await monitoring(info).series.by_ids(principal.tenant_id, [series_id])
    return found.get(series_id)


async def points_of(
    info: CtxInfo, series: MetricSeries, start: datetime | None, end: datetime | None
) -> tuple[int, int, list[StoredPoint]]:
    """(start_ms, end_ms, points) of the range; by default the last day."""
    principal = info.context.authorize(Permission.READ)
    end_ms = epoch_ms(end) if end else epoch_ms(datetime.now(UTC)) + MAX_FUTURE_MS + 1
    start_ms = epoch_ms(start) if start else end_ms - 86_400_000
    if start_ms >= end_ms:
        raise BadUserInput("from must be before to", argument="from")
    points = await monitoring(info).points.between(
        principal.tenant_id, series.id, start_ms, end_ms, MAX_READ
    )
    return start_ms, end_ms, points


def check_max_points(max_points: int) -> int:
    if not 1 <= max_points <= MAX_POINTS:
        raise BadUserInput(f"maxPoints must be between 1 and {MAX_POINTS}", argument="maxPoints")
    return max_points
