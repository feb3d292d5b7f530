"""The demo tenant's service and business series, with planted incidents, and its default
alert rules: deterministic (a seed), ending at `end`, so GraphiQL shows alerts at once.

>>> series = demo_series(end_ms=1_800_000_000_000, days=1)
>>> sorted({s.name for s in series})
['api_latency_ms', 'cpu_percent', 'error_rate_percent', 'streams_per_minute']
>>> errors = next(s for s in series if s.name == "error_rate_percent")
>>> max(errors.values[-10:]) > 5 > max(errors.values[:100])
True
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

STEP_MS = 5 * 60 * 1000
DAY_MS = 86_400_000
# web-1's leak: CPU climbs from 40% to 86% over the last 4 hours. Steep enough that the
# forecast rule's 80% upper bound crosses 90% within the hour at any time of day the demo
# is seeded (93.6% at the least over a day of seeding times), low enough that no point
# passes the 90% threshold rule.
CPU_LEAK_HOURS = 4.0
CPU_LEAK_FROM, CPU_LEAK_TO = 40.0, 86.0  # percent


@dataclass(frozen=True, slots=True)
class DemoSeries:
    name: str
    labels: tuple[tuple[str, str], ...]
    times_ms: list[int]
    values: list[float]


def _daily(t_ms: int, peak_hour: float = 20.0) -> float:
    """A listening day: low at night, highest in the evening (in [0, 1])."""
    hour = (t_ms % DAY_MS) / 3_600_000
    return 0.5 + 0.5 * math.cos((hour - peak_hour) / 24 * 2 * math.pi)


def demo_series(end_ms: int, days: int = 3, seed: int = 7) -> list[DemoSeries]:
    rng = random.Random(seed)
    n = days * DAY_MS // STEP_MS
    times = [end_ms - (n - i) * STEP_MS for i in range(n)]
    ago = {t: (end_ms - t) / 3_600_000 for t in times}  # hours before the end
    out: list[DemoSeries] = []

    streams = [
        # A drop for an hour a day ago: the playback service lost a region.
        (4000 + 6000 * _daily(t)) * (0.55 if 23 <= ago[t] < 24 else 1.0) + rng.gauss(0, 120)
        for t in times
    ]
    out.append(DemoSeries("streams_per_minute", (("service", "playback"),), times, streams))
    for service, base in (("api", 80.0), ("search", 140.0)):
        values = []
        for t in times:
            value = base * (1 + 0.25 * _daily(t)) + rng.gauss(0, base * 0.04)
            if service == "api" and 6 <= ago[t] < 6.5:  # a latency spike six hours ago
                value *= 4.0
            values.append(round(value, 2))
        out.append(DemoSeries("api_latency_ms", (("service", service),), times, values))
    errors = [
        # A bad deploy 40 minutes ago: the error rate jumps and stays up (still firing).
        max(0.0, (8.5 if ago[t] < 0.67 else 0.6) + rng.gauss(0, 0.15))
        for t in times
    ]
    out.append(DemoSeries("error_rate_percent", (("service", "api"),), times, errors))
    for host in ("web-1", "web-2"):
        values = []
        for t in times:
            value = 35 + 25 * _daily(t) + rng.gauss(0, 3)
            if host == "web-2" and 30 <= ago[t] < 31:  # a runaway job yesterday
                value = 96 + rng.gauss(0, 1)
            if host == "web-1" and ago[t] < CPU_LEAK_HOURS:
                # A leak: CPU climbs steadily to just under saturation and is heading past
                # it within the hour, so the demo shows a predictive (forecast rule) alert
                # firing before the threshold rule could.
                leak = CPU_LEAK_FROM + (CPU_LEAK_TO - CPU_LEAK_FROM) * (1 - ago[t] / CPU_LEAK_HOURS)
                value = max(value, leak + rng.gauss(0, 1.0))
            values.append(round(min(max(value, 0.0), 100.0), 2))
        out.append(DemoSeries("cpu_percent", (("host", host), ("service", "api")), times, values))
    return out


DEMO_RULES: list[dict[str, Any]] = [
    {
        "name": "API latency anomaly",
        "kind": "anomaly",
        "selector": "api_latency_ms",
        "min_score": 0.99,
        "severity": "warning",
        "summary": "API latency behaves unlike its recent past",
    },
    {
        "name": "Error rate above 5%",
        "kind": "threshold",
        "selector": 'error_rate_percent{service="api"}',
        "op": ">",
        "threshold": 5.0,
        "severity": "critical",
        "summary": "More than 5% of API requests fail",
    },
    {
        "name": "CPU saturated",
        "kind": "threshold",
        "selector": "cpu_percent",
        "op": ">",
        "threshold": 90.0,
        "for": "10m",
        "severity": "warning",
    },
    {
        "name": "Streams anomaly",
        "kind": "anomaly",
        "selector": "streams_per_minute",
        "min_score": 0.995,
        "severity": "warning",
        "business_weight": 3.0,
    },
    {
        # Predictive: the upper bound of the 80% forecast interval within the next hour.
        "name": "CPU heading for saturation",
        "kind": "forecast",
        "selector": "cpu_percent",
        "op": ">",
        "threshold": 90.0,
        "horizon": "1h",
        "severity": "warning",
    },
]
