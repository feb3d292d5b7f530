"""Metric points as they arrive: series identity and the per-item rules of a batch.

A series is a metric name and a set of labels; its ID is a digest of the name and the
sorted labels, so the same series always gets the same ID whatever order labels come in.
Each point must be finite, not too far in the future, inside the tenant's retention and
newer than the series' last point (a streaming detector learns in time order).

>>> a = series_id("api_latency_ms", {"service": "api", "region": "eu"})
>>> a == series_id("api_latency_ms", {"region": "eu", "service": "api"})
True
>>> now = 1_700_000_000_000
>>> plan = plan_batch(
...     [PointDraft("cpu", {}, now - 1000, 1.0), PointDraft("cpu", {}, now - 2000, 2.0)],
...     last_at={},
...     now_ms=now,
...     retention_days=30,
... )
>>> [p.value for p in plan.accepted[series_id("cpu", {})]], plan.rejected[0].reason.value
([1.0], 'OUT_OF_ORDER')
"""

from __future__ import annotations

import enum
import functools
import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

MAX_FUTURE_MS = 5 * 60 * 1000
DAY_MS = 86_400_000
MAX_LABELS = 16
NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:.]{0,127}")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]{0,63}")
MAX_LABEL_VALUE = 200


class Reason(enum.StrEnum):
    """Why one point of a batch was not stored."""

    INVALID_NAME = "INVALID_NAME"
    INVALID_LABEL = "INVALID_LABEL"
    NON_FINITE = "NON_FINITE"
    FUTURE = "FUTURE"
    EXPIRED = "EXPIRED"
    OUT_OF_ORDER = "OUT_OF_ORDER"
    DUPLICATE = "DUPLICATE"
    OWNED_ELSEWHERE = "OWNED_ELSEWHERE"


@dataclass(frozen=True, slots=True)
class PointDraft:
    """One point as the client sent it: `value` may be anything a JSON number or numeric
    string turns into (a huge integer, "NaN"), `at_ms` epoch milliseconds."""

    name: str
    labels: Mapping[str, str] | Sequence[tuple[str, str]]
    at_ms: int
    value: object


@dataclass(frozen=True, slots=True)
class PointRejection:
    index: int
    field: str
    reason: Reason
    message: str


@dataclass(frozen=True, slots=True)
class SeriesKey:
    id: str
    name: str
    labels: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class AcceptedPoint:
    index: int
    at_ms: int
    value: float


@dataclass(slots=True)
class BatchPlan:
    """The valid points grouped by series (in time order), and every rejected one."""

    accepted: dict[str, list[AcceptedPoint]] = field(default_factory=dict)
    series: dict[str, SeriesKey] = field(default_factory=dict)
    rejected: list[PointRejection] = field(default_factory=list)


Labels = Mapping[str, str] | Sequence[tuple[str, str]]


def _pairs(labels: Labels) -> list[tuple[str, str]]:
    return list(labels.items()) if isinstance(labels, Mapping) else list(labels)


def canonical_labels(labels: Labels) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(_pairs(labels)))


def series_id(name: str, labels: Labels) -> str:
    raw = json.dumps([name, canonical_labels(labels)], separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()[:20]


def series_key(name: str, labels: Labels) -> SeriesKey:
    return SeriesKey(series_id(name, labels), name, canonical_labels(labels))


def finite_value(raw: object) -> float | None:
    """The value as a finite float, or None (NaN, infinities, numbers beyond a double)."""
    if isinstance(raw, bool):
        return None
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return None
    return value if math.isfinite(value) else None


def _check_series(draft: PointDraft) -> tuple[str, str] | SeriesKey:
    """The point's series, or (field, message) of the first rule its name or labels
    break. Batches repeat the same few series: the answer is cached by name and labels."""
    labels = draft.labels if isinstance(draft.labels, tuple) else tuple(_pairs(draft.labels))
    try:
        return _series_of(draft.name, labels)
    except TypeError:  # unhashable labels: not worth caching
        return _series_of.__wrapped__(draft.name, labels)


@functools.lru_cache(maxsize=65_536)
def _series_of(name: str, labels: tuple[tuple[str, str], ...]) -> tuple[str, str] | SeriesKey:
    problem = _series_problem(name, labels)
    return problem if problem is not None else series_key(name, labels)


def _series_problem(name: str, pairs: Sequence[tuple[str, str]]) -> tuple[str, str] | None:
    if not NAME.fullmatch(name):
        return "name", "must match [a-zA-Z_:][a-zA-Z0-9_:.]* and be at most 128 characters"
    if len(pairs) > MAX_LABELS:
        return "labels", f"at most {MAX_LABELS} labels"
    if len({key for key, _ in pairs}) != len(pairs):
        return "labels", "a label name appears twice"
    for key, value in pairs:
        if not LABEL_NAME.fullmatch(key):
            return "labels", f"label name {key[:40]!r} must match [a-zA-Z_][a-zA-Z0-9_]*"
        if not 0 < len(value) <= MAX_LABEL_VALUE:
            return "labels", f"label {key} must have 1-{MAX_LABEL_VALUE} characters"
    return None


def plan_batch(
    drafts: Sequence[PointDraft],
    last_at: Mapping[str, int],
    now_ms: int,
    retention_days: int,
) -> BatchPlan:
    """Sort a batch into accepted points per series and rejections, in input order.

    `last_at` holds the newest stored timestamp of each known series. Within the batch a
    series' points must also come in increasing time.
    """
    plan = BatchPlan()
    newest = dict(last_at)
    oldest_allowed = now_ms - retention_days * DAY_MS
    for index, draft in enumerate(drafts):
        key = _check_series(draft)
        if not isinstance(key, SeriesKey):
            reason = Reason.INVALID_NAME if key[0] == "name" else Reason.INVALID_LABEL
            plan.rejected.append(PointRejection(index, key[0], reason, key[1]))
            continue
        value = finite_value(draft.value)
        if value is None:
            plan.rejected.append(
                PointRejection(index, "value", Reason.NON_FINITE, "must be a finite number")
            )
            continue
        if draft.at_ms > now_ms + MAX_FUTURE_MS:
            plan.rejected.append(
                PointRejection(
                    index, "timestamp", Reason.FUTURE, "is more than 5 minutes in the future"
                )
            )
            continue
        if draft.at_ms < oldest_allowed:
            plan.rejected.append(
                PointRejection(
                    index,
                    "timestamp",
                    Reason.EXPIRED,
                    f"is older than the tenant's retention of {retention_days} days",
                )
            )
            continue
        previous = newest.get(key.id)
        if previous is not None and draft.at_ms <= previous:
            same = draft.at_ms == previous
            plan.rejected.append(
                PointRejection(
                    index,
                    "timestamp",
                    Reason.DUPLICATE if same else Reason.OUT_OF_ORDER,
                    "the series already has a point at this time"
                    if same
                    else "is older than the series' last point",
                )
            )
            continue
        newest[key.id] = draft.at_ms
        plan.series.setdefault(key.id, key)
        plan.accepted.setdefault(key.id, []).append(AcceptedPoint(index, draft.at_ms, value))
    return plan


@dataclass(slots=True)
class MetricSeries:
    """A series and what is known of its latest point."""

    id: str
    name: str
    labels: tuple[tuple[str, str], ...]
    last_at_ms: int | None = None
    last_value: float | None = None
    last_score: float | None = None


@dataclass(frozen=True, slots=True)
class SeriesFilter:
    name: str | None = None
    # Every (name, value) pair must be among the series' labels.
    labels: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class StoredPoint:
    at_ms: int
    value: float
    score: float


@dataclass(frozen=True, slots=True)
class Bucket:
    """Points of one time bucket, summarised: what a chart of a long range needs."""

    start_ms: int
    count: int
    min: float
    max: float
    mean: float
    last: float
    max_score: float


def downsample(
    points: Sequence[StoredPoint], start_ms: int, end_ms: int, buckets: int
) -> list[Bucket]:
    """Points (in time order) of [start_ms, end_ms) summarised into at most `buckets`
    equal time buckets; empty buckets are left out."""
    width = max(1, -(-(end_ms - start_ms) // max(buckets, 1)))
    out: list[Bucket] = []
    group: list[StoredPoint] = []
    current = None

    def close() -> None:
        values = [p.value for p in group]
        out.append(
            Bucket(
                start_ms=start_ms + current * width,  # type: ignore[operator]
                count=len(group),
                min=min(values),
                max=max(values),
                mean=sum(values) / len(values),
                last=values[-1],
                max_score=max(p.score for p in group),
            )
        )

    for point in points:
        index = (point.at_ms - start_ms) // width
        if index != current and group:
            close()
            group = []
        current = index
        group.append(point)
    if group:
        close()
    return out
