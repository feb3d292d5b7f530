"""Alert rules: anomaly, static threshold, absence-of-data and forecast, per tenant.

`Rule.from_input(tenant_id, data)` validates operator input and raises
RuleValidationError with one FieldError per bad field; `to_document`/`from_document`
round-trip a rule through Mongo.

>>> r = Rule.from_input("t1", {"name": "slow api", "kind": "threshold",
...     "selector": 'api_latency_ms{service="api"}', "op": ">", "threshold": 500,
...     "severity": "warning", "for": "2m"})
>>> r.for_.total_seconds(), r.breached(650.0, None), r.breached(400.0, None)
(120.0, True, False)

A forecast rule alerts before the threshold is crossed: by default when the upper bound
of the forecast's 80% interval (for `>`/`>=`; the lower bound for `<`/`<=`) crosses it
within the horizon, i.e. when crossing has become plausible (about a 10% chance at that
step, or more), not only when it is the likeliest outcome; forecast_on="mean" alerts
on the point forecast instead.

>>> f = Rule.from_input("t1", {"name": "disk full soon", "kind": "forecast",
...     "selector": "disk_used_pct", "op": ">", "threshold": 90, "horizon": "6h"})
>>> f.horizon.total_seconds(), f.forecast_level, f.forecast_on, f.resolve_points
(21600.0, 0.8, 'bound', 1)
"""

from __future__ import annotations

import hashlib
import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from tunelytics.domain.monitoring.alerting.matchers import (
    LABEL_NAME,
    MatcherError,
    Selector,
)
from tunelytics.domain.monitoring.alerting.model import (
    FieldError,
    RuleKind,
    RuleValidationError,
    SeriesForecast,
    Severity,
    opt_utc,
    parse_duration,
)
from tunelytics.domain.monitoring.detector import DetectorConfig

COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}
DEFAULT_GROUP_BY = ("service",)
# An anomaly rule's default: the detector's alarm level, the one threshold its calibrated
# scores share (NAB's corpus-wide optimum). Pure noise reaches it about once in 2,000
# points; 0.98 (the default before) was crossed once in 60.
ANOMALY_SCORE = DetectorConfig().alarm_level
MAX_LABELS = 32
FORECAST_ON = ("bound", "mean")
MAX_HORIZON = timedelta(days=30)
MIN_EVERY = timedelta(seconds=10)


@dataclass(frozen=True, slots=True)
class Crossing:
    """Where a forecast first crosses a rule's threshold: the step's time and the
    compared value (the bound or the point forecast)."""

    at: datetime
    value: float
    mean: float


@dataclass(slots=True)
class Rule:
    """One alert rule. Alerts are per (rule, series): every matching series gets its own.

    - anomaly: true while the point's anomaly score >= min_score
    - threshold: true while `value op threshold`
    - absence: true once a known series has had no point for absent_for
    - forecast: true while the series' forecast crosses `op threshold` within `horizon`
      (the interval bound on the threshold's side at forecast_level, or the point
      forecast when forecast_on == "mean"); evaluated every `every` per matching series
      on the last `history` of its points, resolved at the first evaluation
      (resolve_points defaults to 1) whose forecast no longer crosses
    A true condition opens a pending alert that fires after `for_` (0: at once); it
    resolves after `resolve_points` consecutive false points spanning at least
    `resolve_after`. escalate_at (a score for anomaly rules, a value compared with `op`
    for threshold rules) raises the severity to escalate_to.
    """

    id: str
    tenant_id: str
    name: str
    kind: RuleKind
    selector: Selector
    severity: Severity = Severity.WARNING
    labels: dict[str, str] = field(default_factory=dict)
    for_: timedelta = timedelta(0)
    repeat_interval: timedelta = timedelta(hours=4)
    resolve_after: timedelta = timedelta(0)
    resolve_points: int = 2
    min_score: float = ANOMALY_SCORE
    op: str = ">"
    threshold: float = 0.0
    absent_for: timedelta = timedelta(minutes=10)
    group_by: tuple[str, ...] = DEFAULT_GROUP_BY
    group_window: timedelta = timedelta(minutes=5)
    business_weight: float | None = None
    weight_label: str = "business_weight"
    escalate_at: float | None = None
    escalate_to: Severity | None = None
    horizon: timedelta = timedelta(hours=1)
    forecast_level: float = 0.8
    forecast_on: str = "bound"
    every: timedelta = timedelta(minutes=5)
    history: timedelta = timedelta(days=7)
    summary: str = ""
    enabled: bool = True
    created_at: datetime | None = None
    updated_at: datetime | None = None

    def breached(self, value: float | None, score: float | None) -> bool | None:
        """The rule's condition on one point; None when the point says nothing (an
        unscored point for an anomaly rule, or any point for an absence rule)."""
        if self.kind is RuleKind.ANOMALY:
            return None if score is None else score >= self.min_score
        if self.kind is RuleKind.THRESHOLD:
            return None if value is None else COMPARISONS[self.op](value, self.threshold)
        return None

    def strength(self, value: float | None, score: float | None) -> float:
        """How far past the condition a point is, in [0, 1] (priority's strength term)."""
        if self.kind is RuleKind.ANOMALY and score is not None:
            if self.min_score >= 1.0:
                return 1.0
            return _clamp((score - self.min_score) / (1.0 - self.min_score))
        if self.kind is RuleKind.THRESHOLD and value is not None:
            return _clamp(abs(value - self.threshold) / max(abs(self.threshold), 1e-9))
        return 0.0

    def crossing(self, forecast: SeriesForecast) -> Crossing | None:
        """The first forecast step within the horizon past `op threshold`; None when
        none is (or the forecast lacks this rule's interval level)."""
        if self.forecast_on == "mean":
            compared = forecast.mean
        elif self.forecast_level in forecast.bounds:
            lower, upper = forecast.bounds[self.forecast_level]
            compared = upper if self.op in (">", ">=") else lower
        else:
            return None
        until = forecast.origin + self.horizon
        test = COMPARISONS[self.op]
        for at, value, mean in zip(forecast.timestamps, compared, forecast.mean, strict=False):
            if at > until:
                break
            if math.isfinite(value) and test(float(value), self.threshold):
                return Crossing(at, float(value), float(mean))
        return None

    def lead_strength(self, forecast: SeriesForecast, crossing: Crossing) -> float:
        """A forecast alert's strength: 1 when the crossing is one step away, falling
        to 0 at the end of the horizon (the sooner, the more urgent)."""
        lead = (crossing.at - forecast.origin) / self.horizon
        return _clamp(1.0 - lead)

    def escalates(self, value: float | None, score: float | None) -> bool:
        if self.escalate_at is None or self.escalate_to is None:
            return False
        if self.kind is RuleKind.ANOMALY:
            return score is not None and score >= self.escalate_at
        if self.kind is RuleKind.THRESHOLD:
            return value is not None and COMPARISONS[self.op](value, self.escalate_at)
        return False

    # -- input and documents -------------------------------------------------------

    @classmethod
    def from_input(
        cls, tenant_id: str, data: Mapping[str, Any], rule_id: str | None = None
    ) -> Rule:
        """A validated rule from operator input (GraphQL input as a dict). Durations
        take seconds or text ("90s", "5m", "1h30m"); the selector takes text
        (`name{label=~"re"}`) or {name, matchers: [{label, op, value}]}. The id is
        `rule_id`, data["id"], or a hash of tenant and name."""
        errors: list[FieldError] = []
        out: dict[str, Any] = {}

        def check(name: str, parse: Callable[[Any], Any], key: str | None = None) -> None:
            if name not in data or data[name] is None:
                return
            try:
                out[key or name] = parse(data[name])
            except (ValueError, TypeError) as error:
                errors.append(FieldError(name, str(error)))

        name = data.get("name")
        if not isinstance(name, str) or not name.strip():
            errors.append(FieldError("name", "a rule needs a non-empty name"))
        elif len(name) > 200:
            errors.append(FieldError("name", "name is longer than 200 characters"))
        kind: RuleKind | None = None
        try:
            kind = RuleKind(str(data.get("kind")))
        except ValueError:
            errors.append(
                FieldError("kind", "kind must be one of anomaly, threshold, absence, forecast")
            )
        if data.get("selector") is None:
            errors.append(FieldError("selector", "a rule needs a series selector"))
        else:
            try:
                out["selector"] = Selector.parse(data["selector"])
            except MatcherError as error:
                errors.append(FieldError("selector", str(error)))
        check("severity", Severity.parse)
        check("labels", _labels)
        for key, attr in (
            ("for", "for_"),
            ("repeat_interval", None),
            ("resolve_after", None),
            ("absent_for", None),
            ("group_window", None),
            ("horizon", None),
            ("every", None),
            ("history", None),
        ):
            check(key, parse_duration, attr)
        check("resolve_points", lambda v: _int_in(v, 1, 1000))
        check("min_score", lambda v: _float_in(v, 0.0, 1.0, low_open=True))
        check("op", _op)
        check("threshold", lambda v: _float_in(v, -math.inf, math.inf))
        check("group_by", _group_by)
        check("business_weight", lambda v: _float_in(v, 0.01, 100.0))
        check("weight_label", _label_name)
        check("escalate_at", lambda v: _float_in(v, -math.inf, math.inf))
        check("escalate_to", Severity.parse)
        check("forecast_level", lambda v: _float_in(v, 0.5, 0.99))
        check("forecast_on", _forecast_on)
        check("summary", lambda v: _text(v, 1000))
        check("enabled", _bool)
        if kind is RuleKind.THRESHOLD and data.get("threshold") is None:
            errors.append(FieldError("threshold", "a threshold rule needs a threshold"))
        if kind is RuleKind.ABSENCE and data.get("absent_for") is None:
            errors.append(FieldError("absent_for", "an absence rule needs absent_for"))
        if "absent_for" in out and out["absent_for"] <= timedelta(0):
            errors.append(FieldError("absent_for", "absent_for must be longer than 0"))
        if "repeat_interval" in out and out["repeat_interval"] < timedelta(minutes=1):
            errors.append(FieldError("repeat_interval", "repeat_interval must be >= 1m"))
        if (data.get("escalate_at") is None) != (data.get("escalate_to") is None):
            errors.append(FieldError("escalate_to", "escalate_at and escalate_to go together"))
        if "escalate_to" in out and out["escalate_to"] <= out.get("severity", Severity.WARNING):
            errors.append(FieldError("escalate_to", "escalate_to must be above severity"))
        if kind is RuleKind.ABSENCE and data.get("escalate_at") is not None:
            errors.append(FieldError("escalate_at", "absence rules do not escalate by value"))
        if kind is RuleKind.FORECAST:
            _check_forecast(data, out, errors)
        if errors:
            raise RuleValidationError(errors)
        assert kind is not None and isinstance(name, str)
        rid = rule_id or data.get("id") or _rule_id(tenant_id, name)
        return cls(id=str(rid), tenant_id=tenant_id, name=name.strip(), kind=kind, **out)

    def to_document(self) -> dict[str, Any]:
        return {
            "_id": self.id,
            "tenant_id": self.tenant_id,
            "name": self.name,
            "kind": self.kind.value,
            "selector": self.selector.to_document(),
            "severity": self.severity.label,
            "labels": dict(self.labels),
            "for_s": self.for_.total_seconds(),
            "repeat_interval_s": self.repeat_interval.total_seconds(),
            "resolve_after_s": self.resolve_after.total_seconds(),
            "resolve_points": self.resolve_points,
            "min_score": self.min_score,
            "op": self.op,
            "threshold": self.threshold,
            "absent_for_s": self.absent_for.total_seconds(),
            "group_by": list(self.group_by),
            "group_window_s": self.group_window.total_seconds(),
            "business_weight": self.business_weight,
            "weight_label": self.weight_label,
            "escalate_at": self.escalate_at,
            "escalate_to": None if self.escalate_to is None else self.escalate_to.label,
            "horizon_s": self.horizon.total_seconds(),
            "forecast_level": self.forecast_level,
            "forecast_on": self.forecast_on,
            "every_s": self.every.total_seconds(),
            "history_s": self.history.total_seconds(),
            "summary": self.summary,
            "enabled": self.enabled,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> Rule:
        return cls(
            id=str(doc.get("_id", doc.get("id"))),
            tenant_id=doc["tenant_id"],
            name=doc["name"],
            kind=RuleKind(doc["kind"]),
            selector=Selector.from_document(doc["selector"]),
            severity=Severity.parse(doc["severity"]),
            labels=dict(doc.get("labels") or {}),
            for_=timedelta(seconds=doc.get("for_s", 0.0)),
            repeat_interval=timedelta(seconds=doc.get("repeat_interval_s", 4 * 3600.0)),
            resolve_after=timedelta(seconds=doc.get("resolve_after_s", 0.0)),
            resolve_points=int(doc.get("resolve_points", 2)),
            min_score=float(doc.get("min_score", ANOMALY_SCORE)),
            op=doc.get("op", ">"),
            threshold=float(doc.get("threshold", 0.0)),
            absent_for=timedelta(seconds=doc.get("absent_for_s", 600.0)),
            group_by=tuple(doc.get("group_by", DEFAULT_GROUP_BY)),
            group_window=timedelta(seconds=doc.get("group_window_s", 300.0)),
            business_weight=doc.get("business_weight"),
            weight_label=doc.get("weight_label", "business_weight"),
            escalate_at=doc.get("escalate_at"),
            escalate_to=None
            if doc.get("escalate_to") is None
            else Severity.parse(doc["escalate_to"]),
            horizon=timedelta(seconds=doc.get("horizon_s", 3600.0)),
            forecast_level=float(doc.get("forecast_level", 0.8)),
            forecast_on=doc.get("forecast_on", "bound"),
            every=timedelta(seconds=doc.get("every_s", 300.0)),
            history=timedelta(seconds=doc.get("history_s", 7 * 86400.0)),
            summary=doc.get("summary", ""),
            enabled=bool(doc.get("enabled", True)),
            created_at=opt_utc(doc.get("created_at")),
            updated_at=opt_utc(doc.get("updated_at")),
        )


# The derived series of one artist or track (alerting/forecasting.py): the label that
# says which one, which their rules must match with `=`.
SUBJECT_LABEL = {
    "tunelytics_artist_streams_per_hour": "artist",
    "tunelytics_track_streams_per_hour": "track",
}


def _check_forecast(data: Mapping[str, Any], out: dict[str, Any], errors: list[FieldError]) -> None:
    selector: Selector | None = out.get("selector")
    label = SUBJECT_LABEL.get(selector.name or "") if selector is not None else None
    if (
        selector is not None
        and label is not None
        and not any(m.label == label and m.op == "=" for m in selector.matchers)
    ):
        errors.append(
            FieldError("selector", f'{selector.name} needs {label}="..." to say which one')
        )
    if data.get("threshold") is None:
        errors.append(FieldError("threshold", "a forecast rule needs a threshold"))
    if out.get("op", ">") not in (">", ">=", "<", "<="):
        errors.append(FieldError("op", "a forecast rule's op is one of >, >=, <, <="))
    if data.get("horizon") is None:
        errors.append(FieldError("horizon", "a forecast rule needs a horizon"))
    elif "horizon" in out and not timedelta(0) < out["horizon"] <= MAX_HORIZON:
        errors.append(FieldError("horizon", "horizon must be longer than 0 and at most 30d"))
    if "every" in out and out["every"] < MIN_EVERY:
        errors.append(FieldError("every", "every must be >= 10s"))
    if "history" in out and out["history"] < out.get("horizon", timedelta(0)) * 4:
        errors.append(FieldError("history", "history must be at least 4 horizons long"))
    if data.get("escalate_at") is not None:
        errors.append(FieldError("escalate_at", "forecast rules do not escalate by value"))
    # One evaluation whose forecast no longer crosses resolves (evaluations are minutes apart).
    out.setdefault("resolve_points", 1)


def _forecast_on(v: Any) -> str:
    if v not in FORECAST_ON:
        raise ValueError(f"forecast_on must be one of {', '.join(FORECAST_ON)}")
    return str(v)


def _rule_id(tenant_id: str, name: str) -> str:
    return "rule-" + hashlib.blake2b(f"{tenant_id}\0{name}".encode(), digest_size=8).hexdigest()


def _clamp(x: float) -> float:
    return 0.0 if x < 0.0 else 1.0 if x > 1.0 else x


def _float_in(v: Any, low: float, high: float, low_open: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ValueError("must be a number")
    x = float(v)
    if not math.isfinite(x):
        raise ValueError("must be a finite number")
    if x < low or x > high or (low_open and x == low):
        raise ValueError(f"must be in {'(' if low_open else '['}{low}, {high}]")
    return x


def _int_in(v: Any, low: int, high: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError("must be an integer")
    if not low <= v <= high:
        raise ValueError(f"must be in [{low}, {high}]")
    return v


def _op(v: Any) -> str:
    if v not in COMPARISONS:
        raise ValueError(f"op must be one of {', '.join(COMPARISONS)}")
    return str(v)


def _label_name(v: Any) -> str:
    if not isinstance(v, str) or not LABEL_NAME.match(v):
        raise ValueError(f"{v!r} is not a valid label name")
    return v


def _labels(v: Any) -> dict[str, str]:
    if not isinstance(v, Mapping):
        raise ValueError("labels must be a mapping of label name to string")
    if len(v) > MAX_LABELS:
        raise ValueError(f"at most {MAX_LABELS} labels")
    out = {}
    for k, val in v.items():
        _label_name(k)
        if not isinstance(val, str) or len(val) > 200:
            raise ValueError(f"label {k!r} must be a string of at most 200 characters")
        out[k] = val
    return out


def _group_by(v: Any) -> tuple[str, ...]:
    if isinstance(v, str) or not isinstance(v, list | tuple):
        raise ValueError("group_by must be a list of label names")
    if len(v) > MAX_LABELS:
        raise ValueError(f"at most {MAX_LABELS} group_by labels")
    return tuple(_label_name(x) for x in v)


def _text(v: Any, limit: int) -> str:
    if not isinstance(v, str) or len(v) > limit:
        raise ValueError(f"must be a string of at most {limit} characters")
    return v


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError("must be true or false")
    return v
