"""The alerting vocabulary: severities, states, event kinds, samples, durations, errors."""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from tunelytics.domain.errors import InvalidItem


class Severity(enum.IntEnum):
    """Ordered: INFO < WARNING < CRITICAL. Documents store the lowercase name."""

    INFO = 0
    WARNING = 1
    CRITICAL = 2

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, raw: Any) -> Severity:
        if isinstance(raw, Severity):
            return raw
        if isinstance(raw, str) and raw.upper() in cls.__members__:
            return cls[raw.upper()]
        raise ValueError(f"severity must be one of info, warning, critical (got {raw!r})")


class RuleKind(enum.StrEnum):
    ANOMALY = "anomaly"
    THRESHOLD = "threshold"
    ABSENCE = "absence"
    FORECAST = "forecast"


class AlertState(enum.StrEnum):
    PENDING = "pending"
    FIRING = "firing"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


OPEN_STATES = frozenset({AlertState.PENDING, AlertState.FIRING, AlertState.ACKNOWLEDGED})
ACTIVE_STATES = frozenset({AlertState.FIRING, AlertState.ACKNOWLEDGED})


class IncidentState(enum.StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


class EventKind(enum.StrEnum):
    FIRED = "fired"
    ESCALATED = "escalated"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class Feedback(enum.StrEnum):
    USEFUL = "useful"
    NOISE = "noise"


@dataclass(frozen=True, slots=True)
class SeriesSample:
    """One scored point of one series, as the detector hands it on. `score` is the
    detector's anomaly score in [0, 1] (None when the point was not scored)."""

    series_id: str
    name: str
    labels: dict[str, str]
    ts: datetime
    value: float
    score: float | None = None


@dataclass(frozen=True, slots=True)
class SeriesPresence:
    """When a series last had a point; what absence rules look at."""

    series_id: str
    name: str
    labels: dict[str, str]
    last_seen: datetime


@dataclass(frozen=True, slots=True)
class SeriesForecast:
    """A forecast of one series made at `origin` (its last observation), for forecast
    rules: the point forecast at `timestamps` and, per interval level, the lower and
    upper bounds. The service computes one per series at the longest horizon and every
    level its matching rules ask for; each rule reads its own horizon and level."""

    series_id: str
    name: str
    labels: dict[str, str]
    origin: datetime
    timestamps: Sequence[datetime]
    mean: Sequence[float]
    bounds: Mapping[float, tuple[Sequence[float], Sequence[float]]] = field(default_factory=dict)
    model: str = ""


@dataclass(frozen=True, slots=True)
class FieldError:
    field: str
    message: str


class RuleValidationError(InvalidItem):
    """Rule (or silence) input with one or more bad fields; `errors` names each one.
    It is an InvalidItem, so the API layer maps it to BAD_USER_INPUT and batch helpers
    report it per item."""

    def __init__(self, errors: list[FieldError]) -> None:
        first = errors[0].field if errors else None
        super().__init__(first, "; ".join(f"{e.field}: {e.message}" for e in errors))
        self.errors = errors


class AlertStateError(ValueError):
    """A lifecycle step that the alert's state does not allow (e.g. acknowledging a
    resolved alert). Maps to BAD_USER_INPUT."""


def utc(at: datetime) -> datetime:
    """Aware UTC; Mongo hands back naive UTC datetimes unless the client is tz_aware."""
    if at.tzinfo is UTC:
        return at
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def opt_utc(at: datetime | None) -> datetime | None:
    return None if at is None else utc(at)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(raw: Any) -> timedelta:
    """A timedelta from a timedelta, seconds (int/float) or Prometheus text ("90s",
    "5m", "1h30m"). Negative, non-finite and unparsable values raise ValueError."""
    if isinstance(raw, timedelta):
        seconds = raw.total_seconds()
    elif isinstance(raw, bool):
        raise ValueError("duration must be seconds or text like 5m")
    elif isinstance(raw, int | float):
        seconds = float(raw)
    elif isinstance(raw, str):
        text = raw.strip()
        if text in ("0", ""):
            seconds = 0.0
        else:
            pos, seconds = 0, 0.0
            for m in _DURATION.finditer(text):
                if m.start() != pos:
                    break
                seconds += float(m.group(1)) * _UNIT[m.group(2)]
                pos = m.end()
            if pos != len(text):
                raise ValueError(f"cannot parse duration {raw!r} (use e.g. 90s, 5m, 1h30m)")
    else:
        raise ValueError("duration must be seconds or text like 5m")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError("duration must be a finite number of seconds >= 0")
    if seconds > 366 * 86400:
        raise ValueError("duration must be at most a year")
    return timedelta(seconds=seconds)
