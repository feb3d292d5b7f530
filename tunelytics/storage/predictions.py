"""Business series counted from listens on the database, and stored predictions.

Buckets are the `$dateToString` hour or day keys of storage/analytics.date_key (UTC,
exact on MongoDB and on nx-27017: docs/mongodb-compat.md e, e6). The history window is a
`seq` range (a string that sorts like the listen time), not a date comparison (g, h).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
from bson import ObjectId
from pymongo.asynchronous.database import AsyncDatabase

from tunelytics.domain.models import DataWindow
from tunelytics.domain.predict.business import Prediction, SeriesKind
from tunelytics.domain.predict.churn import ListenHistory
from tunelytics.domain.predict.forecast import Backtest, Forecast, Interval
from tunelytics.domain.predict.popularity import DailyPlays
from tunelytics.storage.analytics import DAY, date_key, parse_date_key, seq_bound
from tunelytics.storage.database import Storage
from tunelytics.storage.scope import tenant_scope

Document = dict[str, Any]
BATCH = 20_000
MAX_HISTORY_LISTENS = 2_000_000
# Churn reads half a year of listens (tenure beyond that adds nothing); popularity eight
# weeks when serving (the newest 28 complete days, even when the data stopped a while
# ago) and twelve when training (hold-out and validation weeks before them).
CHURN_HISTORY = timedelta(days=180)
POPULARITY_SERVING_DAYS = 56
POPULARITY_TRAINING_DAYS = 84


class ListenSeriesRepository:
    """Streams and active listeners per bucket, counted by the database."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.listens = db["listens"]
        self.tracks = db["tracks"]

    async def track_ids_of_artist(self, tenant_id: str, artist_id: str) -> list[str]:
        query = tenant_scope(tenant_id, artist_id={"$eq": artist_id})
        return [doc["id"] async for doc in self.tracks.find(query, {"id": 1, "_id": 0})]

    async def streams(
        self, tenant_id: str, step: timedelta, since: datetime, track_ids: list[str] | None
    ) -> dict[datetime, int]:
        match = self._match(tenant_id, since, track_ids)
        pipeline = [{"$match": match}, {"$group": {"_id": date_key(step), "n": {"$sum": 1}}}]
        return {
            parse_date_key(doc["_id"], step): int(doc["n"])
            async for doc in await self.listens.aggregate(pipeline)
        }

    async def active_listeners(
        self, tenant_id: str, step: timedelta, since: datetime, track_ids: list[str] | None
    ) -> dict[datetime, int]:
        match = self._match(tenant_id, since, track_ids)
        # $addToSet rather than a compound (bucket, listener) key: the emulator does not
        # evaluate expressions inside a compound group key (e3).
        group = {"_id": date_key(step), "who": {"$addToSet": "$listener_id"}}
        return {
            parse_date_key(doc["_id"], step): len(doc["who"])
            async for doc in await self.listens.aggregate([{"$match": match}, {"$group": group}])
        }

    async def daily_track_plays(
        self, tenant_id: str, since: datetime
    ) -> dict[tuple[str, date], int]:
        """Plays per (track, UTC day) since `since`, counted by the database.

        The key is one string, track ID + "|" + day: the emulator does not group on a
        compound key of expressions, nor of fields computed by a `$project` (e6), but it
        does evaluate `$concat`. Days hold no "|", so the last one splits the key.
        """
        key = {"$concat": ["$track_id", "|", date_key(DAY)]}
        pipeline = [
            {"$match": self._match(tenant_id, since, None)},
            {"$group": {"_id": key, "n": {"$sum": 1}}},
        ]
        result: dict[tuple[str, date], int] = {}
        async for doc in await self.listens.aggregate(pipeline):
            track, _, when = str(doc["_id"]).rpartition("|")
            result[(track, parse_date_key(when, DAY).date())] = int(doc["n"])
        return result

    async def history(
        self, tenant_id: str, since: datetime, limit: int = MAX_HISTORY_LISTENS
    ) -> ListenHistory:
        """(listener, track, time, skipped, ms played) of the listens since `since`, at
        most `limit` of them (a memory bound: a tenant beyond it reads a subset)."""
        fields = {"_id": 0, "listener_id": 1, "track_id": 1, "ts": 1, "skipped": 1, "ms_played": 1}
        cursor = self.listens.find(
            tenant_scope(tenant_id, seq={"$gte": seq_bound(since)}), fields, batch_size=BATCH
        ).limit(limit)
        return ListenHistory.of(
            [
                (d["listener_id"], d["track_id"], d["ts"], bool(d["skipped"]), int(d["ms_played"]))
                async for d in cursor
            ]
        )

    @staticmethod
    def _match(tenant_id: str, since: datetime, track_ids: list[str] | None) -> Document:
        match = tenant_scope(tenant_id, seq={"$gte": seq_bound(since)})
        if track_ids is not None:
            match["track_id"] = {"$in": track_ids}
        return match


async def read_churn_history(storage: Storage, tenant_id: str) -> ListenHistory:
    """The churn model's training (and scoring) data: CHURN_HISTORY of listens."""
    repo = ListenSeriesRepository(storage.db)
    return await repo.history(tenant_id, datetime.now(UTC) - CHURN_HISTORY)


async def read_daily_plays(
    storage: Storage, tenant_id: str, days: int = POPULARITY_TRAINING_DAYS
) -> DailyPlays:
    """Plays per (track, UTC day) over the `days` whole days before today."""
    now = datetime.now(UTC)
    since = datetime.combine(now.date(), datetime.min.time(), UTC) - timedelta(days=days)
    plays = await ListenSeriesRepository(storage.db).daily_track_plays(tenant_id, since)
    return DailyPlays(plays, now.date())


def history_window(history: ListenHistory) -> DataWindow:
    if len(history.at) == 0:
        return DataWindow(None, None, 0)
    start, end = float(history.at.min()), float(history.at.max())
    return DataWindow(
        datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC), len(history.at)
    )


def plays_window(daily: DailyPlays) -> DataWindow:
    if not daily.plays:
        return DataWindow(None, None, 0)
    days = [day for _, day in daily.plays]
    start = datetime.combine(min(days), datetime.min.time(), UTC)
    end = datetime.combine(max(days), datetime.min.time(), UTC) + timedelta(days=1)
    return DataWindow(start, end, sum(daily.plays.values()))


class PredictionRepository:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.collection = db["predictions"]

    async def insert(
        self,
        tenant_id: str,
        kind: SeriesKind,
        subject: str,
        level: float,
        forecast: Forecast,
        model_version: str,
    ) -> Prediction:
        oid = ObjectId()
        now = datetime.now(UTC)
        doc = {
            "_id": oid,
            "tenant_id": tenant_id,
            "kind": kind.value,
            "subject": subject,
            "horizon": len(forecast.mean),
            "level": level,
            "step_seconds": forecast.step.total_seconds(),
            "timestamps": forecast.timestamps,
            "values": [float(v) for v in forecast.mean],
            "intervals": [
                {
                    "level": i.level,
                    "lower": [float(v) for v in i.lower],
                    "upper": [float(v) for v in i.upper],
                }
                for i in forecast.intervals
            ],
            "model": forecast.model,
            "model_version": model_version,
            "backtest": {
                "origins": forecast.backtest.origins,
                "mae": forecast.backtest.mae,
                "mase": forecast.backtest.mase,
                # Mongo keys are strings: coverage per level as pairs.
                "coverage": [[k, v] for k, v in forecast.backtest.coverage.items()],
                # Every candidate's backtest MAE: why this model was chosen.
                "candidates": [[k, v] for k, v in forecast.backtest.candidates.items()],
            },
            "created_at": now,
        }
        await self.collection.insert_one(doc)
        return _prediction(doc)

    async def recent(
        self, tenant_id: str, kind: SeriesKind | None, subject: str | None, first: int
    ) -> list[Prediction]:
        query = tenant_scope(tenant_id)
        if kind is not None:
            query["kind"] = {"$eq": kind.value}
        if subject is not None:
            query["subject"] = {"$eq": subject}
        docs = (
            await self.collection.find(query)
            .sort([("created_at", -1), ("_id", -1)])
            .limit(first)
            .to_list()
        )
        return [_prediction(doc) for doc in docs if doc["tenant_id"] == tenant_id]


def _prediction(doc: Document) -> Prediction:
    backtest = doc["backtest"]
    forecast = Forecast(
        timestamps=[t if t.tzinfo else t.replace(tzinfo=UTC) for t in doc["timestamps"]],
        mean=np.array(doc["values"]),
        intervals=[
            Interval(i["level"], np.array(i["lower"]), np.array(i["upper"]))
            for i in doc["intervals"]
        ],
        model=doc["model"],
        step=timedelta(seconds=doc["step_seconds"]),
        backtest=Backtest(
            origins=backtest["origins"],
            mae=backtest["mae"],
            mase=backtest["mase"],
            coverage={float(k): float(v) for k, v in backtest["coverage"]},
            candidates={str(k): float(v) for k, v in backtest.get("candidates", [])},
        ),
    )
    return Prediction(
        id=str(doc["_id"]),
        kind=SeriesKind(doc["kind"]),
        subject=doc["subject"],
        horizon=doc["horizon"],
        level=doc["level"],
        forecast=forecast,
        model_version=doc["model_version"],
        created_at=doc["created_at"],
    )
