"""Query, Mutation and Subscription roots, and the Schema with its guard rails."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from datetime import datetime
from functools import partial

import strawberry
from graphql import GraphQLError
from strawberry import Info
from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    ValidationCache,
)
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from tunelytics.config import Limits
from tunelytics.domain.auth import Permission
from tunelytics.domain.batches import Rejection
from tunelytics.resolvers import catalog as catalog_resolvers
from tunelytics.resolvers import listening as listening_resolvers
from tunelytics.resolvers.context import Context
from tunelytics.resolvers.cost import query_cost_limit
from tunelytics.resolvers.errors import NotFound, code_errors_in_place
from tunelytics.resolvers.lookahead import selects
from tunelytics.resolvers.observability import OperationMetrics
from tunelytics.resolvers.ratelimit import RateLimit
from tunelytics.schema.alerts import AlertMutation, AlertQueryRoot, AlertSubscription
from tunelytics.schema.analytics import AnalyticsQuery
from tunelytics.schema.audio import AudioMutation, AudioQuery
from tunelytics.schema.connections import Connection, connection
from tunelytics.schema.inputs import (
    ArtistInput,
    ListenerInput,
    ListenInput,
    TrackFilter,
    TrackInput,
    TrackOrderBy,
)
from tunelytics.schema.models import ModelMutation, ModelQuery, ModelSubscription
from tunelytics.schema.monitoring import (
    METRIC_VALUE,
    MetricValue,
    MonitoringMutation,
    MonitoringQuery,
)
from tunelytics.schema.predict import PredictMutation, PredictQuery
from tunelytics.schema.recommend import RecommendQuery
from tunelytics.schema.scalars import DATETIME
from tunelytics.schema.types import (
    Artist,
    Listen,
    Listener,
    RecordListensPayload,
    RejectedItem,
    Tenant,
    Track,
    UpsertArtistsPayload,
    UpsertListenersPayload,
    UpsertTracksPayload,
    Viewer,
)

CtxInfo = Info[Context, None]


@strawberry.type
class Query(
    MonitoringQuery,
    AlertQueryRoot,
    PredictQuery,
    ModelQuery,
    RecommendQuery,
    AudioQuery,
    AnalyticsQuery,
):
    @strawberry.field(description="Who you are: your tenant and roles.")
    def viewer(self, info: CtxInfo) -> Viewer:
        return Viewer.of(info.context.principal)

    @strawberry.field(description="Your tenant.")
    async def tenant(self, info: CtxInfo) -> Tenant:
        principal = info.context.authorize(Permission.READ)
        found = await info.context.loaders.tenant.load(principal.tenant_id)
        if found is None:
            raise NotFound(f"tenant {principal.tenant_id} is not registered")
        return Tenant.of(found)

    @strawberry.field
    async def track(self, info: CtxInfo, id: strawberry.ID) -> Track | None:
        return Track.of(await catalog_resolvers.track(info, id))

    @strawberry.field(description="Tracks in a stable order, a page at a time.")
    async def tracks(
        self,
        info: CtxInfo,
        filter: TrackFilter | None = None,
        order_by: TrackOrderBy = TrackOrderBy.TITLE,
        first: int = 20,
        after: str | None = None,
    ) -> Connection[Track]:
        where = (filter or TrackFilter()).to_domain()
        with_artists = selects(info, "edges", "node", "artist") or selects(info, "nodes", "artist")
        page = await catalog_resolvers.tracks(
            info, where, order_by.value, first, after, with_artists=with_artists
        )
        return connection(
            page,
            order_by.value,
            Track.of,
            has_previous=after is not None,
            counter=partial(catalog_resolvers.count_tracks, info, where),
        )

    @strawberry.field
    async def artist(self, info: CtxInfo, id: strawberry.ID) -> Artist | None:
        return Artist.of(await catalog_resolvers.artist(info, id))

    @strawberry.field(description="Artists by name, a page at a time.")
    async def artists(
        self, info: CtxInfo, genre: str | None = None, first: int = 20, after: str | None = None
    ) -> Connection[Artist]:
        page = await catalog_resolvers.artists(info, genre, first, after)
        return connection(page, "NAME", Artist.of, has_previous=after is not None)

    @strawberry.field
    async def listener(self, info: CtxInfo, id: strawberry.ID) -> Listener | None:
        return Listener.of(await listening_resolvers.listener(info, id))


def _rejected(rejections: list[Rejection]) -> list[RejectedItem]:
    return [RejectedItem.of(r) for r in rejections]


@strawberry.type
class Mutation(MonitoringMutation, AlertMutation, ModelMutation, AudioMutation, PredictMutation):
    @strawberry.mutation(description="Create or update artists; invalid items are reported.")
    async def upsert_artists(
        self, info: CtxInfo, artists: list[ArtistInput]
    ) -> UpsertArtistsPayload:
        result = await catalog_resolvers.upsert_artists(info, [a.to_domain() for a in artists])
        return UpsertArtistsPayload(
            artists=[Artist.of(a) for a in result.stored], rejected=_rejected(result.rejected)
        )

    @strawberry.mutation(description="Create or update tracks; invalid items are reported.")
    async def upsert_tracks(self, info: CtxInfo, tracks: list[TrackInput]) -> UpsertTracksPayload:
        result = await catalog_resolvers.upsert_tracks(info, [t.to_domain() for t in tracks])
        return UpsertTracksPayload(
            tracks=[Track.of(t) for t in result.stored], rejected=_rejected(result.rejected)
        )

    @strawberry.mutation(description="Create or update listeners; invalid items are reported.")
    async def upsert_listeners(
        self, info: CtxInfo, listeners: list[ListenerInput]
    ) -> UpsertListenersPayload:
        result = await listening_resolvers.upsert_listeners(
            info, [li.to_domain() for li in listeners]
        )
        return UpsertListenersPayload(
            listeners=[Listener.of(li) for li in result.stored],
            rejected=_rejected(result.rejected),
        )

    @strawberry.mutation(description="Store listens; each valid one is also pushed live.")
    async def record_listens(
        self, info: CtxInfo, listens: list[ListenInput]
    ) -> RecordListensPayload:
        result = await listening_resolvers.record_listens(info, [li.to_domain() for li in listens])
        return RecordListensPayload(
            listens=[Listen.of(li) for li in result.stored], rejected=_rejected(result.rejected)
        )


@strawberry.type
class Subscription(AlertSubscription, ModelSubscription):
    @strawberry.subscription(description="Every listen of your tenant as it is stored.")
    async def listens(
        self, info: CtxInfo, track_id: strawberry.ID | None = None
    ) -> AsyncGenerator[Listen, None]:
        async for listen in listening_resolvers.listen_stream(info, track_id):
            yield Listen.of(listen)


class Schema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        code_errors_in_place(errors)


def _guard_rails(limits: Limits) -> type[AddValidationRules]:
    """Depth and alias limits as validation rules built once.

    Strawberry's limiter extensions build new rule classes per instance, i.e. per request,
    and the validation cache is keyed by the rule classes: it would never hit.
    """
    rules = [
        *QueryDepthLimiter(max_depth=limits.max_depth).validation_rules,
        *MaxAliasesLimiter(max_alias_count=limits.max_aliases).validation_rules,
    ]

    class GuardRails(AddValidationRules):
        def __init__(self) -> None:
            super().__init__(rules)

    return GuardRails


def build_schema(limits: Limits) -> strawberry.Schema:
    return Schema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        config=StrawberryConfig(scalar_map={MetricValue: METRIC_VALUE, datetime: DATETIME}),
        extensions=[
            OperationMetrics,
            RateLimit,
            query_cost_limit(limits.max_objects),
            _guard_rails(limits),
            partial(MaxTokensLimiter, max_token_count=limits.max_tokens),
            partial(ParserCache, maxsize=256),
            partial(ValidationCache, maxsize=256),
        ],
    )
