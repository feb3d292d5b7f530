"""The in-process monitoring pipeline: ingest a batch, score it, store it, raise alerts.

Each series is owned by one replica at a time through a lease on its checkpoint document
(storage/monitoring.CheckpointRepository). The owner keeps the series' detector in memory,
scores every point as it arrives (causally, in time order), and checkpoints the detector's
state every `checkpoint_points` points or `checkpoint_seconds`, and on shutdown. A replica
that takes a series over (a restart, or an expired lease) starts from the checkpoint and
replays the points stored after it, so it continues exactly where the last owner stopped.
Points of a series another replica holds are rejected with OWNED_ELSEWHERE (retriable);
a load balancer that routes by series (docs/architecture.md) makes that rare.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from tunelytics.domain.monitoring.detector import SeriesDetector
from tunelytics.domain.monitoring.points import (
    AcceptedPoint,
    BatchPlan,
    PointDraft,
    PointRejection,
    Reason,
    SeriesKey,
    plan_batch,
)
from tunelytics.storage.monitoring import (
    CheckpointRepository,
    MonitoringStore,
    PointRepository,
    SeriesRepository,
    retention_cutoff,
)

log = logging.getLogger(__name__)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class Sample:
    """One scored point, as the alert engine sees it."""

    series: SeriesKey
    at_ms: int
    value: float
    score: float


class AlertSink(Protocol):
    async def observe(self, tenant_id: str, samples: list[Sample], now: int) -> None: ...


@dataclass(frozen=True)
class MonitoringSettings:
    # A takeover replays the points stored after the checkpoint, so checkpoints can be
    # rare: a detector's state is ~0.5 MB after a few thousand points.
    checkpoint_points: int = 5_000
    checkpoint_seconds: float = 120.0
    lease_ms: int = 60_000
    flush_seconds: float = 1.0
    retention_sweep_seconds: float = 3_600.0


@dataclass(slots=True)
class OwnedSeries:
    key: SeriesKey
    detector: SeriesDetector
    version: int
    lease_until: int
    last_at: int | None
    last_value: float | None = None
    last_score: float | None = None
    unsaved: int = 0
    saved_at: float = field(default_factory=time.monotonic)
    summary_dirty: bool = False


@dataclass(slots=True)
class IngestResult:
    stored: int
    # The last score of each series the batch touched, by series ID.
    scores: dict[str, tuple[SeriesKey, float]]
    rejected: list[PointRejection]


def score_batch(detector: SeriesDetector, values: np.ndarray, at_s: np.ndarray) -> np.ndarray:
    """The detector's batched form when it has one, else one point at a time."""
    many = getattr(detector, "score_many", None)
    if many is not None:
        return np.asarray(many(values, at_s), dtype=float)
    return np.array(
        [detector.score_one(float(v), float(a)) for v, a in zip(values, at_s, strict=True)]
    )


class MonitoringService:
    def __init__(
        self,
        store: MonitoringStore,
        settings: MonitoringSettings | None = None,
        alerts: AlertSink | None = None,
        owner: str | None = None,
        retentions: Callable[[], Awaitable[dict[str, int]]] | None = None,
    ) -> None:
        self.store = store
        self.series: SeriesRepository = store.series
        self.points: PointRepository = store.points
        self.checkpoints: CheckpointRepository = store.checkpoints
        self.settings = settings or MonitoringSettings()
        self.alerts = alerts
        self.owner = owner or f"replica-{uuid.uuid4().hex[:12]}"
        # Each tenant's retention in days (the periodic sweep's input).
        self.retentions = retentions
        self.owned: dict[tuple[str, str], OwnedSeries] = {}
        # Per series: ingestion and checkpoints (one per series this replica has seen).
        self.series_locks: dict[tuple[str, str], asyncio.Lock] = {}
        # Per tenant: changes of its alerts (shared with the AlertService).
        self.locks: dict[str, asyncio.Lock] = {}
        self.tasks: list[asyncio.Task[None]] = []

    # --- ingestion ---------------------------------------------------------------------

    async def ingest(
        self, tenant_id: str, drafts: Sequence[PointDraft], retention_days: int
    ) -> IngestResult:
        # Planned before any lock, at the batch's arrival time: which series it touches.
        arrived = now_ms()
        plan = plan_batch(drafts, {}, arrived, retention_days)
        async with self._holding(tenant_id, plan.series):
            result, samples = await self._ingest(tenant_id, drafts, retention_days, plan, arrived)
            if self.alerts is None or not samples:
                return result
            # The tenant's lock (alert changes) is taken before the series' locks are let
            # go: the next batch of these series reaches the alert engine after this one.
            alerting = self.locks.setdefault(tenant_id, asyncio.Lock())
            await alerting.acquire()
        try:
            await self.alerts.observe(tenant_id, samples, now_ms())
        finally:
            alerting.release()
        return result

    @contextlib.asynccontextmanager
    async def _holding(self, tenant_id: str, series_ids: Iterable[str]) -> AsyncIterator[None]:
        """Hold the locks of these series: a series' detector is read, advanced and
        stored by one batch at a time, across the awaits on the database in between.
        Batches of other series run concurrently. Taken in one (sorted) order by every
        caller, so two batches sharing series cannot deadlock."""
        async with contextlib.AsyncExitStack() as held:
            for sid in sorted(set(series_ids)):
                lock = self.series_locks.setdefault((tenant_id, sid), asyncio.Lock())
                await held.enter_async_context(lock)
            yield

    async def _ingest(
        self,
        tenant_id: str,
        drafts: Sequence[PointDraft],
        retention_days: int,
        first: BatchPlan,
        arrived: int,
    ) -> tuple[IngestResult, list[Sample]]:
        refused = await self._own(tenant_id, list(first.series.values()), now_ms())
        last_at = {
            sid: owned.last_at
            for sid in first.series
            if (owned := self.owned.get((tenant_id, sid))) is not None and owned.last_at is not None
        }
        # Planning again against the series' last points changes nothing when each series'
        # first point is newer than its last stored one (the usual case): planned once.
        plan = (
            first
            if all(first.accepted[sid][0].at_ms > at for sid, at in last_at.items())
            else plan_batch(drafts, last_at, arrived, retention_days)
        )
        rejected = list(plan.rejected)
        rows: list[tuple[str, int, float, float]] = []
        origin: list[AcceptedPoint] = []
        for sid, accepted in plan.accepted.items():
            if sid in refused:
                rejected.extend(
                    PointRejection(
                        p.index,
                        "labels",
                        Reason.OWNED_ELSEWHERE,
                        "another replica owns this series now; retry",
                    )
                    for p in accepted
                )
                continue
            owned = self.owned[(tenant_id, sid)]
            values = np.fromiter((p.value for p in accepted), float, len(accepted))
            at_s = np.fromiter((p.at_ms / 1000.0 for p in accepted), float, len(accepted))
            scores = score_batch(owned.detector, values, at_s)
            for point, score in zip(accepted, scores.tolist(), strict=True):
                rows.append((sid, point.at_ms, point.value, score))
                origin.append(point)
        duplicates = await self.points.insert(tenant_id, rows, retention_days)
        samples: list[Sample] = []
        result_scores: dict[str, tuple[SeriesKey, float]] = {}
        for position, (sid, at, value, score) in enumerate(rows):
            if position in duplicates:
                rejected.append(
                    PointRejection(
                        origin[position].index,
                        "timestamp",
                        Reason.DUPLICATE,
                        "the series already has a point at this time",
                    )
                )
                continue
            owned = self.owned[(tenant_id, sid)]
            owned.last_at, owned.last_value, owned.last_score = at, value, score
            owned.unsaved += 1
            owned.summary_dirty = True
            result_scores[sid] = (owned.key, score)
            samples.append(Sample(owned.key, at, value, score))
        for sid in plan.accepted:
            owned_series = self.owned.get((tenant_id, sid))
            if owned_series and owned_series.unsaved >= self.settings.checkpoint_points:
                await self._checkpoint(tenant_id, owned_series)
        rejected.sort(key=lambda r: r.index)
        result = IngestResult(
            stored=len(rows) - len(duplicates), scores=result_scores, rejected=rejected
        )
        return result, samples

    async def _own(self, tenant_id: str, keys: list[SeriesKey], now: int) -> set[str]:
        """Make sure this replica holds each series; returns the IDs another one holds."""
        # A lease that ran out (no renewal: a stalled process) may have been taken over:
        # such a series is acquired afresh, from its checkpoint, like a new one.
        for key in keys:
            owned = self.owned.get((tenant_id, key.id))
            if owned is not None and owned.lease_until <= now:
                del self.owned[(tenant_id, key.id)]
        missing = [k for k in keys if (tenant_id, k.id) not in self.owned]
        refused: set[str] = set()
        if not missing:
            return refused
        await self.series.ensure(tenant_id, missing)
        # Series never owned before (most, in a growing fleet) are created in one write,
        # and have nothing stored yet to catch up on.
        known = await self.checkpoints.existing(tenant_id, [k.id for k in missing])
        fresh = [k for k in missing if k.id not in known]
        created = await self.checkpoints.create_many(
            tenant_id, [k.id for k in fresh], self.owner, now, self.settings.lease_ms
        )
        for key in fresh:
            if key.id in created:
                self.owned[(tenant_id, key.id)] = OwnedSeries(
                    key=key,
                    detector=SeriesDetector(),
                    version=0,
                    lease_until=now + self.settings.lease_ms,
                    last_at=None,
                )
            else:
                known.add(key.id)
        for key in missing:
            if key.id not in known:
                continue
            checkpoint = await self.checkpoints.acquire(
                tenant_id, key.id, self.owner, now, self.settings.lease_ms
            )
            if checkpoint is None:
                refused.add(key.id)
                continue
            detector = (
                SeriesDetector.from_state(checkpoint.state)
                if checkpoint.state is not None
                else SeriesDetector()
            )
            # Points stored after the checkpoint (the last owner stopped without saving):
            # learn them again, in order, so this detector equals an uninterrupted one.
            later = await self.points.after(tenant_id, key.id, checkpoint.at_ms or -1)
            if later:
                score_batch(
                    detector,
                    np.array([p.value for p in later]),
                    np.array([p.at_ms / 1000.0 for p in later]),
                )
            last = later[-1] if later else await self.points.latest(tenant_id, key.id)
            self.owned[(tenant_id, key.id)] = OwnedSeries(
                key=key,
                detector=detector,
                version=checkpoint.version,
                lease_until=checkpoint.lease_until,
                last_at=last.at_ms if last else None,
                last_value=last.value if last else None,
                last_score=last.score if last else None,
                unsaved=len(later),
            )
        return refused

    # --- checkpoints, leases, retention --------------------------------------------------

    async def _checkpoint(self, tenant_id: str, owned: OwnedSeries) -> None:
        if owned.last_at is None:
            return
        lease_until = now_ms() + self.settings.lease_ms
        saved = await self.checkpoints.save(
            tenant_id,
            owned.key.id,
            self.owner,
            owned.version,
            owned.detector.state(),
            owned.last_at,
            lease_until,
        )
        if not saved:
            # Another replica took the series over: our state is stale, drop it.
            log.warning("lost the lease of a series", extra={"series": owned.key.id})
            self.owned.pop((tenant_id, owned.key.id), None)
            return
        owned.version += 1
        owned.lease_until = lease_until
        owned.unsaved = 0
        owned.saved_at = time.monotonic()
        await self._write_summaries(tenant_id, [owned])

    async def _write_summaries(self, tenant_id: str, series: list[OwnedSeries]) -> None:
        latest = {
            s.key.id: (s.last_at, s.last_value, s.last_score)
            for s in series
            if s.summary_dirty and s.last_at is not None
        }
        if latest:
            await self.series.update_latest(tenant_id, latest)  # type: ignore[arg-type]
        for s in series:
            s.summary_dirty = False

    async def flush(self, everything: bool = False) -> None:
        """Checkpoint what is due (all of it when `everything`), renew leases, write the
        series' latest points."""
        due_age = self.settings.checkpoint_seconds
        now = now_ms()
        by_tenant: dict[str, list[OwnedSeries]] = {}
        for (tenant_id, _), owned in list(self.owned.items()):
            by_tenant.setdefault(tenant_id, []).append(owned)
        for tenant_id, series in by_tenant.items():
            async with self._holding(tenant_id, (s.key.id for s in series)):
                # A batch may have taken a series over (a new detector) meanwhile.
                series = [s for s in series if self.owned.get((tenant_id, s.key.id)) is s]
                for owned in series:
                    old = time.monotonic() - owned.saved_at >= due_age
                    expiring = owned.lease_until - now < self.settings.lease_ms // 2
                    if owned.unsaved and (everything or old):
                        await self._checkpoint(tenant_id, owned)
                    elif expiring:
                        # Renewed without the state (~0.5 MB a series): checkpoints keep to
                        # their own schedule. A takeover replays what came since the last.
                        lease_until = now + self.settings.lease_ms
                        if await self.checkpoints.renew(
                            tenant_id, owned.key.id, self.owner, owned.version, lease_until
                        ):
                            owned.lease_until = lease_until
                        else:
                            self.owned.pop((tenant_id, owned.key.id), None)
                await self._write_summaries(
                    tenant_id, [s for s in series if (tenant_id, s.key.id) in self.owned]
                )

    async def sweep_retention(self, tenant_id: str, retention_days: int) -> int:
        """Delete the tenant's points older than its retention (what TTL does on MongoDB)."""
        cutoff = retention_cutoff(now_ms(), retention_days)
        deleted = 0
        for sid in await self.series.all_ids(tenant_id):
            deleted += await self.points.delete_before(tenant_id, sid, cutoff)
        return deleted

    async def sweep_all(self) -> int:
        if self.retentions is None:
            return 0
        deleted = 0
        for tenant_id, days in (await self.retentions()).items():
            deleted += await self.sweep_retention(tenant_id, days)
        return deleted

    async def release_all(self) -> None:
        for (tenant_id, sid), _ in list(self.owned.items()):
            await self.checkpoints.release(tenant_id, sid, self.owner)
        self.owned.clear()

    # --- lifecycle -----------------------------------------------------------------------

    def add_periodic(self, name: str, seconds: float, job: Callable[[], Awaitable[Any]]) -> None:
        async def loop() -> None:
            while True:
                await asyncio.sleep(seconds)
                try:
                    await job()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("periodic monitoring job failed", extra={"job": name})

        self.tasks.append(asyncio.create_task(loop(), name=name))

    async def start(self) -> None:
        # Indexes: Storage.ensure_indexes (app start-up retries it while MongoDB is down).
        self.add_periodic("monitoring-flush", self.settings.flush_seconds, self.flush)
        self.add_periodic(
            "monitoring-retention", self.settings.retention_sweep_seconds, self.sweep_all
        )

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.tasks.clear()
        try:
            await self.flush(everything=True)
            await self.release_all()
        except Exception:
            log.exception("could not checkpoint the detectors at shutdown")
