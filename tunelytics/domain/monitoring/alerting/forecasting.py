"""What forecast rules read: one forecast per series, at the longest horizon and every
interval level its matching rules use (domain/predict's forecaster, model chosen by
backtest, intervals calibrated on it).

>>> from datetime import UTC, datetime, timedelta
>>> from tunelytics.domain.monitoring.alerting.rules import SUBJECT_LABEL, Rule
>>> rule = Rule.from_input("t1", {"name": "disk full soon", "kind": "forecast",
...     "selector": "disk_used_pct", "op": ">", "threshold": 90, "horizon": "2h"})
>>> t0 = datetime(2026, 12, 1, tzinfo=UTC)
>>> times = [t0 + timedelta(minutes=5 * i) for i in range(200)]
>>> values = [50 + 0.1 * i for i in range(200)]  # +1.2 per hour, 69.9 at the end
>>> f = forecast_for_rules([rule], "s1", "disk_used_pct", {}, times, values)
>>> len(f.timestamps), sorted(f.bounds), rule.crossing(f) is None
(24, [0.8], True)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from tunelytics.domain.monitoring.alerting.model import RuleKind, SeriesForecast
from tunelytics.domain.monitoring.alerting.rules import SUBJECT_LABEL, Rule
from tunelytics.domain.predict.business import SeriesKind, SeriesRef
from tunelytics.domain.predict.errors import NotEnoughData
from tunelytics.domain.predict.forecast import forecast_regular
from tunelytics.domain.predict.series import regular

# Series the product derives from listens, as forecast rules name them: the tenant's
# streams per hour and active listeners per day, and one artist's or track's streams per
# hour, named by an equality matcher (`tunelytics_artist_streams_per_hour{artist="a1"}`).
# One name per scope, so a tenant-wide rule never matches an artist's series.
TENANT_SERIES = {
    "tunelytics_streams_per_hour": SeriesKind.STREAMS,
    "tunelytics_active_listeners_per_day": SeriesKind.ACTIVE_LISTENERS,
}


@dataclass(frozen=True, slots=True)
class BusinessTarget:
    """A derived series a forecast rule names: what to count, and how the rule sees it."""

    ref: SeriesRef
    name: str
    labels: dict[str, str]

    @property
    def series_id(self) -> str:
        return f"{self.name}:{self.ref.subject}"


def business_target(rule: Rule) -> BusinessTarget | None:
    """The derived series a forecast rule names; None for a metric rule, or an artist or
    track series without the equality matcher that says which.

    >>> rule = Rule.from_input("t1", {"name": "streams dropping", "kind": "forecast",
    ...     "selector": 'tunelytics_artist_streams_per_hour{artist="ar-7"}', "op": "<",
    ...     "threshold": 10, "horizon": "12h"})
    >>> target = business_target(rule)
    >>> target.series_id, target.labels
    ('tunelytics_artist_streams_per_hour:artist:ar-7', {'artist': 'ar-7'})
    """
    name = rule.selector.name or ""
    if rule.kind is not RuleKind.FORECAST:
        return None
    if name in TENANT_SERIES:
        return BusinessTarget(SeriesRef(TENANT_SERIES[name]), name, {})
    label = SUBJECT_LABEL.get(name)  # the artist's or track's streams (rules.py checks it)
    equal = {m.label: m.value for m in rule.selector.matchers if m.op == "="}
    if label is None or label not in equal:
        return None
    subject = equal[label]
    ref = (
        SeriesRef(SeriesKind.STREAMS, artist_id=subject)
        if label == "artist"
        else SeriesRef(SeriesKind.STREAMS, track_id=subject)
    )
    return BusinessTarget(ref, name, {label: subject})


def business_targets(rules: Iterable[Rule]) -> list[BusinessTarget]:
    """The derived series the rules name, each once."""
    found: dict[str, BusinessTarget] = {}
    for rule in rules:
        if (target := business_target(rule)) is not None:
            found.setdefault(target.series_id, target)
    return list(found.values())


# Steps past this are not forecast (a horizon of days on a 10-second series): the
# forecaster's history cap could not support them anyway.
MAX_STEPS = 1_000


def forecast_for_rules(
    rules: Sequence[Rule],
    series_id: str,
    name: str,
    labels: dict[str, str],
    times: Sequence[datetime],
    values: Sequence[float],
) -> SeriesForecast | None:
    """The forecast the given (forecast) rules need; None when the history cannot
    support their longest horizon at the series' resolution (too short or too gappy), so
    the rules say nothing about this series rather than guess."""
    rules = [r for r in rules if r.kind is RuleKind.FORECAST]
    if not rules or len(times) < 2:
        return None
    try:
        series = regular(times, values)
        horizon = max(r.horizon for r in rules)
        steps = math.ceil(horizon / series.step)
        if steps > MAX_STEPS:
            return None
        levels = sorted({r.forecast_level for r in rules})
        result = forecast_regular(series, steps, levels)
    except (NotEnoughData, ValueError):
        return None
    return SeriesForecast(
        series_id=series_id,
        name=name,
        labels=labels,
        origin=series.at(len(series) - 1),
        timestamps=result.timestamps,
        mean=result.mean.tolist(),
        bounds={i.level: (i.lower.tolist(), i.upper.tolist()) for i in result.intervals},
        model=result.model,
    )
