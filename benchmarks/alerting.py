"""Alert engine throughput: scored points/s through one tenant's rules, statelessly.

    nice -n 5 .venv/bin/python benchmarks/alerting.py [--points 200000] [--batch 500]

A tenant with 2,000 series (4 metric names x 20 services x 25 hosts) and 60 rules
(anomaly, threshold and absence; name-indexed and wildcard selectors, regex and negative
matchers), points arriving in batches with ~0.5% anomalies and occasional breaches, so
alerts fire, escalate, group, repeat and resolve. Each call gets the open alerts and
incidents that the previous calls left (as a server would after loading them).

Baseline, same run: the same engine without its rule index and match cache (every rule's
selector matched against every point), which is what a naive loop over rules does. Both
must produce the same events; the script checks that before printing figures.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta

import numpy as np

from tunelytics.domain.monitoring.alerting import (
    Alert,
    AlertEngine,
    Incident,
    Rule,
    SeriesSample,
)

NAMES = ("api_latency_ms", "error_rate", "cpu", "streams_per_minute")
T0 = datetime(2026, 12, 1, tzinfo=UTC)


class UnindexedEngine(AlertEngine):
    """The baseline: match every rule against every point, no index, no cache."""

    def _rules_for(
        self, series_id: str, name: str, labels: dict[str, str]
    ) -> tuple[tuple[Rule, ...], ...]:
        with_name = {**labels, "__name__": name}
        hits = [r for r in self.rules.values() if r.selector.matches(name, with_name)]
        return (
            tuple(r for r in hits if r.kind.value in ("anomaly", "threshold")),
            tuple(r for r in hits if r.kind.value == "absence"),
            tuple(r for r in hits if r.kind.value == "forecast"),
        )


def tenant_rules() -> list[Rule]:
    rules = []
    for svc in (f"svc{i}" for i in range(20)):
        rules.append(
            Rule.from_input(
                "t",
                {
                    "name": f"latency {svc}",
                    "kind": "threshold",
                    "threshold": 800.0,
                    "selector": f'api_latency_ms{{service="{svc}"}}',
                    "for": "2m",
                    "escalate_at": 1500.0,
                    "escalate_to": "critical",
                },
            )
        )
        rules.append(
            Rule.from_input(
                "t",
                {
                    "name": f"anomaly {svc}",
                    "kind": "anomaly",
                    "min_score": 0.99,
                    "selector": f'{{service="{svc}", host!~"h2.*"}}',
                },
            )
        )
    for name in NAMES:
        rules.append(
            Rule.from_input(
                "t",
                {
                    "name": f"{name} anomaly",
                    "kind": "anomaly",
                    "min_score": 0.995,
                    "selector": f'{name}{{service=~"svc1.*|svc2"}}',
                    "severity": "critical",
                },
            )
        )
        rules.append(
            Rule.from_input(
                "t",
                {"name": f"{name} gone", "kind": "absence", "absent_for": "5m", "selector": name},
            )
        )
    for k in range(12):
        rules.append(
            Rule.from_input(
                "t",
                {
                    "name": f"errors {k}",
                    "kind": "threshold",
                    "threshold": 0.2 + k / 100,
                    "selector": f'error_rate{{host=~"h{k}.*"}}',
                    "severity": "warning",
                },
            )
        )
    return rules  # fmt: skip


def series() -> list[tuple[str, str, dict[str, str]]]:
    return [
        (f"{name}/svc{s}/h{h}", name, {"service": f"svc{s}", "host": f"h{h}"})
        for name in NAMES
        for s in range(20)
        for h in range(25)
    ]


def make_batches(
    points: int, batch: int, anomaly_rate: float, value_scale: float, seed: int = 0
) -> list[list[SeriesSample]]:
    rng = np.random.default_rng(seed)
    all_series = series()
    out, at = [], T0
    for _ in range(points // batch):
        picks = rng.integers(len(all_series), size=batch)
        scores = rng.random(batch) ** 16  # mostly low, a few near 1
        anomalous = rng.random(batch) < anomaly_rate
        scores[anomalous] = 0.995 + 0.005 * rng.random(int(anomalous.sum()))
        values = rng.gamma(2.0, 150.0 * value_scale, batch)
        values[anomalous] *= 6
        at += timedelta(seconds=1)
        out.append(
            [
                SeriesSample(
                    sid, name, labels, at, float(v) / (5000 if "error" in name else 1), float(sc)
                )
                for (sid, name, labels), v, sc in zip(
                    (all_series[i] for i in picks), values, scores, strict=True
                )
            ]
        )
    return out


def run(engine: AlertEngine, batches: list[list[SeriesSample]]) -> tuple[float, float, list[tuple]]:
    """Wall and CPU seconds (CPU: the machine is shared), and the events."""
    alerts: dict[str, Alert] = {}
    incidents: dict[str, Incident] = {}
    events: list[tuple] = []
    started, cpu = time.perf_counter(), time.process_time()
    for batch in batches:
        now = batch[-1].ts
        ev = engine.evaluate(batch, list(alerts.values()), list(incidents.values()), now)
        for a in ev.changed_alerts:
            if a.is_open:
                alerts[a.id] = a
            else:
                alerts.pop(a.id, None)
        for a in ev.dropped_alerts:
            alerts.pop(a.id, None)
        for i in ev.changed_incidents:
            if i.is_open:
                incidents[i.id] = i
            else:
                incidents.pop(i.id, None)
        events.extend((e.kind.value, e.alert.id, e.notify) for e in ev.events)
    return time.perf_counter() - started, time.process_time() - cpu, events


SCENARIOS = {
    # (anomaly rate, value scale): events per point ~8% (an outage storm), ~2%, ~0.4%.
    "storm": (0.02, 1.6),
    "busy": (0.005, 1.0),
    "quiet": (0.0005, 0.6),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--points", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    rules = tenant_rules()
    print(f"{len(rules)} rules, 2000 series, batches of {args.batch}, {args.points} points each")
    print("| scenario | engine | events | points/s (wall) | points/s (CPU) | us/point (CPU) |")
    print("|---|---|---|---|---|---|")
    for scenario, (rate, scale) in SCENARIOS.items():
        batches = make_batches(args.points, args.batch, rate, scale)
        n = sum(len(b) for b in batches)
        fast = run(AlertEngine(rules), batches)
        slow = run(UnindexedEngine(rules), batches)
        assert fast[2] == slow[2], "the baseline and the engine disagree"
        kinds: dict[str, int] = {}
        for kind, _, _ in fast[2]:
            kinds[kind] = kinds.get(kind, 0) + 1
        counted = " ".join(f"{k} {v}" for k, v in kinds.items())
        for label, (wall, cpu, _) in (("AlertEngine", fast), ("baseline (unindexed)", slow)):
            print(
                f"| {scenario} | {label} | {counted} | {n / wall:,.0f} | {n / cpu:,.0f} "
                f"| {1e6 * cpu / n:.1f} |"
            )


if __name__ == "__main__":
    main()
