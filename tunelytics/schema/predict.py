"""GraphQL types and root fields of forecasts, churn risks and track popularity."""

from __future__ import annotations

from datetime import datetime
from enum import Enum

import strawberry
from strawberry import Info

from tunelytics.domain.predict.business import Prediction, SeriesKind, SeriesRef
from tunelytics.domain.predict.churn import ChurnRisk as DomainChurnRisk
from tunelytics.domain.predict.popularity import TrackPopularity as DomainTrackPopularity
from tunelytics.resolvers import predict as resolvers
from tunelytics.resolvers.context import Context
from tunelytics.resolvers.errors import BadUserInput
from tunelytics.schema.types import Track

CtxInfo = Info[Context, None]


@strawberry.enum(description="A series the product counts from listens.")
class BusinessSeriesKind(Enum):
    STREAMS = "STREAMS"
    ACTIVE_LISTENERS = "ACTIVE_LISTENERS"


@strawberry.enum
class PredictionKind(Enum):
    STREAMS = "STREAMS"
    ACTIVE_LISTENERS = "ACTIVE_LISTENERS"
    METRIC = "METRIC"


@strawberry.input(
    description="Streams per hour or active listeners per day; of the tenant, or of one "
    "artist or track (streams only)."
)
class BusinessSeriesInput:
    kind: BusinessSeriesKind
    artist_id: strawberry.ID | None = None
    track_id: strawberry.ID | None = None


@strawberry.type
class ForecastPoint:
    at: datetime
    mean: float
    lower: float
    upper: float


@strawberry.type(description="A model the backtest tried, and its error there.")
class ForecastCandidate:
    model: str
    mae: float


@strawberry.type
class ForecastBacktest:
    origins: int = strawberry.field(description="Rolling origins the model was tested on.")
    mae: float
    mase: float | None = strawberry.field(
        description="MAE over the in-sample seasonal-naive error; null on a constant history."
    )
    coverage: float | None = strawberry.field(
        description="Share of held-out backtest values inside the interval at `level`."
    )
    candidates: list[ForecastCandidate] = strawberry.field(
        description="Every model tried, lowest backtest MAE first: the choice made."
    )


@strawberry.type
class Forecast:
    id: strawberry.ID
    kind: PredictionKind
    subject: str = strawberry.field(
        description='"tenant", "artist:<id>", "track:<id>" or "metric:<id>".'
    )
    step_seconds: float
    level: float
    model: str = strawberry.field(description="The model the backtest chose for this series.")
    model_version: str
    points: list[ForecastPoint]
    backtest: ForecastBacktest
    created_at: datetime

    @staticmethod
    def of(p: Prediction) -> Forecast:
        f = p.forecast
        band = next((i for i in f.intervals if abs(i.level - p.level) < 1e-9), f.intervals[0])
        coverage = f.backtest.coverage.get(band.level)
        return Forecast(
            id=strawberry.ID(p.id),
            kind=PredictionKind[p.kind.name],
            subject=p.subject,
            step_seconds=f.step.total_seconds(),
            level=band.level,
            model=f.model,
            model_version=p.model_version,
            points=[
                ForecastPoint(at=t, mean=float(m), lower=float(lo), upper=float(hi))
                for t, m, lo, hi in zip(f.timestamps, f.mean, band.lower, band.upper, strict=True)
            ],
            backtest=ForecastBacktest(
                origins=f.backtest.origins,
                mae=f.backtest.mae,
                mase=f.backtest.mase,
                coverage=coverage if coverage is not None and coverage == coverage else None,
                candidates=[
                    ForecastCandidate(model=m, mae=e)
                    for m, e in sorted(f.backtest.candidates.items(), key=lambda c: (c[1], c[0]))
                ],
            ),
            created_at=p.created_at,
        )


@strawberry.type
class ChurnDriver:
    feature: str
    value: float
    contribution: float = strawberry.field(
        description="Effect on the log-odds of churn; positive raises the risk."
    )


@strawberry.type(description="The probability that a listener has no listen in the next 28 days.")
class ChurnRisk:
    listener_id: strawberry.ID
    probability: float
    as_of: datetime = strawberry.field(description="The cut-off: the tenant's newest listen.")
    drivers: list[ChurnDriver]

    @staticmethod
    def of(risk: DomainChurnRisk, as_of: datetime) -> ChurnRisk:
        return ChurnRisk(
            listener_id=strawberry.ID(risk.listener_id),
            probability=risk.probability,
            as_of=as_of,
            drivers=[
                ChurnDriver(feature=d.feature, value=d.value, contribution=d.contribution)
                for d in risk.drivers
            ],
        )


@strawberry.type(description="A track's plays: the last 7 days and the forecast for the next 7.")
class TrackPopularity:
    track_id: strawberry.ID
    predicted_plays_7d: float
    last_plays_7d: int
    growth: float = strawberry.field(
        description="The forecast over the track's mean weekly plays of the last 28 days, "
        "shrunk toward 1 for tracks with few plays; above 1.25 is rising."
    )

    @staticmethod
    def of(p: DomainTrackPopularity) -> TrackPopularity:
        return TrackPopularity(
            track_id=strawberry.ID(p.track_id),
            predicted_plays_7d=p.predicted_7d,
            last_plays_7d=round(p.last_7d),
            growth=p.growth,
        )


@strawberry.type
class RisingTrack:
    track: Track
    predicted_plays_7d: float
    last_plays_7d: int
    growth: float


def _ref(series: BusinessSeriesInput | None, series_id: strawberry.ID | None) -> SeriesRef:
    if (series is None) == (series_id is None):
        raise BadUserInput("give exactly one of `series` (a business series) or `seriesId`")
    if series_id is not None:
        return SeriesRef(SeriesKind.METRIC, series_id=str(series_id))
    assert series is not None
    if series.artist_id is not None and series.track_id is not None:
        raise BadUserInput("series: give artistId or trackId, not both")
    kind = SeriesKind[series.kind.name]
    if kind is SeriesKind.ACTIVE_LISTENERS and (series.artist_id or series.track_id):
        raise BadUserInput("series: ACTIVE_LISTENERS is counted over the whole tenant only")
    return SeriesRef(
        kind,
        artist_id=str(series.artist_id) if series.artist_id is not None else None,
        track_id=str(series.track_id) if series.track_id is not None else None,
    )


@strawberry.type
class PredictMutation:
    @strawberry.mutation(
        description="Forecast a series `horizon` steps ahead at its own resolution (hours for "
        "streams, days for active listeners, the sampling interval of a metric series), "
        "with the model chosen by backtest; the forecast is stored (read them back with "
        "`predictions`). Analysts and admins."
    )
    async def forecast(
        self,
        info: CtxInfo,
        horizon: int,
        series: BusinessSeriesInput | None = None,
        series_id: strawberry.ID | None = None,
        interval: float = 0.8,
    ) -> Forecast:
        ref = _ref(series, series_id)
        return Forecast.of(await resolvers.forecast_series(info, ref, horizon, interval))


@strawberry.type
class PredictQuery:
    @strawberry.field(description="Stored forecasts, newest first; of one series if given.")
    async def predictions(
        self,
        info: CtxInfo,
        kind: PredictionKind | None = None,
        series: BusinessSeriesInput | None = None,
        series_id: strawberry.ID | None = None,
        first: int = 20,
    ) -> list[Forecast]:
        ref = _ref(series, series_id) if series is not None or series_id is not None else None
        stored = await resolvers.stored_predictions(
            info, ref, SeriesKind[kind.name] if kind is not None else None, first
        )
        return [Forecast.of(p) for p in stored]

    @strawberry.field(
        description="Churn risk of one listener, with its top drivers, from the tenant's "
        "active CHURN model (MODEL_NOT_READY until one is trained and activated)."
    )
    async def churn_risk(self, info: CtxInfo, listener_id: strawberry.ID) -> ChurnRisk:
        risk, as_of = await resolvers.churn_risk(info, str(listener_id))
        return ChurnRisk.of(risk, as_of)

    @strawberry.field(description="Listeners most likely to stop listening, riskiest first.")
    async def at_risk_listeners(self, info: CtxInfo, first: int = 20) -> list[ChurnRisk]:
        risks, as_of = await resolvers.at_risk_listeners(info, first)
        return [ChurnRisk.of(r, as_of) for r in risks]

    @strawberry.field(
        description="Predicted plays of one track over the next 7 days, from the tenant's "
        "active POPULARITY model (MODEL_NOT_READY until one is trained and activated)."
    )
    async def track_popularity(self, info: CtxInfo, track_id: strawberry.ID) -> TrackPopularity:
        return TrackPopularity.of(await resolvers.track_popularity(info, str(track_id)))

    @strawberry.field(
        description="Tracks whose forecast grows exceptionally (growth at least 1.25), "
        "fastest first; at most 100."
    )
    async def rising_tracks(self, info: CtxInfo, first: int = 10) -> list[RisingTrack]:
        found = await resolvers.rising(info, first)
        return [
            RisingTrack(
                track=Track.of(track),
                predicted_plays_7d=p.predicted_7d,
                last_plays_7d=round(p.last_7d),
                growth=p.growth,
            )
            for track, p in found
        ]
