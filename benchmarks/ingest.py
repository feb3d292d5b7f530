"""Metric ingestion end to end: sustained points/s through `ingestMetrics` on the real
server (embedded nx-27017, detection and an anomaly rule on every series), and the alert
latency from the ingest call to the event on a WebSocket subscription.

Side by side, in the same run and on the same points: the two halves of the pipeline on
their own, the baselines that bound it:
  * storage: PyMongo `insert_many` of the same points' documents into a collection with the
    same indexes (the TTL index on `expire_at`): the bucket documents ingestion writes (the
    database's ceiling), and one document a point (the layout before buckets);
  * detector: `SeriesDetector` scoring the same values in this process (one core).
CPU seconds of the server and of nx-27017 during the run say which side is the bottleneck.

`--clients 1,2,4` runs the ingestion once per client count, each time on series of its
own (a `run` label): N clients send at once, each owning 1/N of the series (as agents
do: no out-of-order rejections), the same points in the same number of requests. The
insert_many ceiling is measured the same way, N concurrent inserters.

    .venv/bin/python benchmarks/ingest.py --batches 40 --series 200 --probes 30 --clients 1,2,4
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import websockets
from websockets.typing import Subprotocol

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import (
    TENANT,
    RealServerConfig,
    cpu_seconds,
    embedded_mongo,
    machine_report,
    new_secret,
    percentile,
    real_server,
    running,
    table,
    token,
)
from tunelytics.domain.auth import Role
from tunelytics.domain.monitoring.detector import SeriesDetector
from tunelytics.domain.monitoring.points import series_id
from tunelytics.domain.tenancy import Tenant
from tunelytics.storage import connect
from tunelytics.storage.monitoring import (
    EPOCH,
    MONITORING_INDEXES,
    bucket_documents,
    point_key,
)

INGEST = """mutation($points: [MetricPointInput!]!) { ingestMetrics(points: $points) {
  stored rejected { index reason } } }"""
RULE = """mutation($rule: AlertRuleInput!) { createAlertRule(rule: $rule) { id } }"""
SUBSCRIBE = "subscription { alerts(minSeverity: INFO) { kind alert { id } } }"


def make_batches(
    n_batches: int, n_series: int, batch: int, start: datetime, run: str = "c1"
) -> list[list[dict[str, Any]]]:
    """Batches of `batch` points over `n_series` series, each series in time order."""
    rng = np.random.default_rng(5)
    per = batch // n_series
    out = []
    for b in range(n_batches):
        points = []
        for s in range(n_series):
            for k in range(per):
                step = b * per + k
                at = start + timedelta(seconds=60 * step)
                value = 100 + 10 * np.sin(step / 30 + s) + rng.normal(0, 1)
                points.append(
                    {
                        "series": "bench_metric",
                        "labels": [
                            {"name": "series", "value": f"s{s}"},
                            {"name": "run", "value": run},
                        ],
                        "timestamp": at.isoformat(),
                        "value": round(float(value), 3),
                    }
                )
        out.append(points)
    return out


def by_client(
    batches: list[list[dict[str, Any]]], clients: int
) -> list[list[list[dict[str, Any]]]]:
    """The same points for `clients` senders, each owning the series s with s % clients
    == its number, in time order, in batches of the same size."""
    size = len(batches[0])
    mine: list[list[dict[str, Any]]] = [[] for _ in range(clients)]
    for points in batches:
        for p in points:
            mine[int(p["labels"][0]["value"][1:]) % clients].append(p)
    return [[own[i : i + size] for i in range(0, len(own), size)] for own in mine]


async def ingest_run(url: str, tok: str, clients: list[list[list[dict[str, Any]]]]) -> float:
    """Every client sends its batches one after the other, all clients at once. Request
    bodies are encoded before the clock starts: the sender's own CPU stays out of it."""
    headers = {"authorization": f"Bearer {tok}", "content-type": "application/json"}
    bodies = [
        [json.dumps({"query": INGEST, "variables": {"points": points}}).encode() for points in own]
        for own in clients
    ]

    async def send(own: list[bytes]) -> None:
        async with httpx.AsyncClient(timeout=120) as client:
            for body in own:
                response = await client.post(url, content=body, headers=headers)
                data = response.json()
                assert "errors" not in data, data
                assert data["data"]["ingestMetrics"]["rejected"] == [], data

    started = time.perf_counter()
    await asyncio.gather(*(send(own) for own in bodies))
    return time.perf_counter() - started


async def latency_run(ws_url: str, url: str, tok: str, probes: int, batch: int) -> list[float]:
    """Each probe: a batch of `batch - 3` ordinary points and three of the probe series,
    the last over a threshold; the time from sending it to the FIRED event arriving."""
    latencies: list[float] = []
    async with (
        httpx.AsyncClient(timeout=60) as client,
        websockets.connect(ws_url, subprotocols=[Subprotocol("graphql-transport-ws")]) as ws,
    ):
        await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": tok}}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": SUBSCRIBE}}))
        await asyncio.sleep(0.5)
        base = datetime.now(UTC) - timedelta(days=3)
        headers = {"authorization": f"Bearer {tok}"}
        background = batch - 3
        for probe in range(probes + 1):
            points = [
                {
                    "series": "probe_background",
                    "labels": [{"name": "k", "value": f"b{batch}-{i % 100}"}],
                    "timestamp": (base + timedelta(minutes=probe * background + i)).isoformat(),
                    "value": 1.0,
                }
                for i in range(background)
            ]
            # Two points back to normal (the previous alert resolves), then one over the
            # threshold: a new alert fires.
            for k, value in enumerate((1.0, 1.0, 1e6)):
                at = base + timedelta(days=1, minutes=3 * probe + k)
                points.append(
                    {
                        "series": "probe_latency",
                        "labels": [{"name": "probe", "value": f"p{batch}"}],
                        "timestamp": at.isoformat(),
                        "value": value,
                    }
                )
            sent = time.perf_counter()
            await client.post(
                url, json={"query": INGEST, "variables": {"points": points}}, headers=headers
            )
            while True:
                message = json.loads(await asyncio.wait_for(ws.recv(), 30))
                if message["payload"]["data"]["alerts"]["kind"] == "FIRED":
                    break
            if probe > 0:  # the first one warms up the path
                latencies.append(time.perf_counter() - sent)
    return latencies


def point_rows(points: list[dict[str, Any]]) -> list[tuple[str, int, float, float]]:
    """(series, at_ms, value, score) rows of these points, as ingestion stores them."""
    rows = []
    for p in points:
        labels = {lb["name"]: lb["value"] for lb in p["labels"]}
        at = int(datetime.fromisoformat(p["timestamp"]).timestamp() * 1000)
        rows.append((series_id(p["series"], labels), at, float(p["value"]), 0.0))
    return rows


LAYOUTS = {
    "buckets": "the same bucket documents",
    "point": "one document a point (the layout before buckets)",
}


def stored_documents(points: list[dict[str, Any]], layout: str) -> list[dict[str, Any]]:
    """The documents of these points: `buckets`, what ingestion writes (storage/monitoring.py),
    or `point`, one document a point (the layout before buckets)."""
    keep = timedelta(days=30)
    rows = point_rows(points)
    if layout == "buckets":
        return [doc for doc, _ in bucket_documents("baseline", rows, keep)]
    return [
        {
            "_id": point_key("baseline", sid, at),
            "tenant_id": "baseline",
            "series_id": sid,
            "t": at,
            "v": value,
            "s": score,
            "expire_at": EPOCH + timedelta(milliseconds=at) + keep,
        }
        for sid, at, value, score in rows
    ]


async def storage_baseline(
    mongo_url: str, clients: list[list[list[dict[str, Any]]]], layout: str
) -> float:
    """insert_many of the same points' documents, one inserter per client, all at once."""
    storage = connect(mongo_url, "ingest_baseline")
    collection = storage.db["metric_buckets"]
    # The index every stored document also updates (~10-18 us a document of nx-27017's CPU).
    await collection.create_indexes(MONITORING_INDEXES["metric_buckets"])
    docs = [[stored_documents(points, layout) for points in own] for own in clients]

    async def insert(own: list[list[dict[str, Any]]]) -> None:
        for batch in own:
            await collection.insert_many(batch, ordered=False)

    started = time.perf_counter()
    await asyncio.gather(*(insert(own) for own in docs))
    took = time.perf_counter() - started
    await storage.client.drop_database("ingest_baseline")
    await storage.close()
    return took


def detector_baseline(batches: list[list[dict[str, Any]]]) -> float:
    detectors: dict[str, SeriesDetector] = {}
    rows = [
        (p["labels"][0]["value"], datetime.fromisoformat(p["timestamp"]).timestamp(), p["value"])
        for points in batches
        for p in points
    ]
    started = time.perf_counter()
    for key, at, value in rows:
        detector = detectors.get(key)
        if detector is None:
            detector = detectors[key] = SeriesDetector()
        detector.score_one(value, at)
    return time.perf_counter() - started


async def register(mongo_url: str, database: str) -> None:
    storage = connect(mongo_url, database)
    await storage.ensure_indexes()
    await storage.tenants.create(Tenant(id=TENANT, name="Benchmark"))
    await storage.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--series", type=int, default=200)
    parser.add_argument("--probes", type=int, default=30)
    parser.add_argument(
        "--clients", default="1", help="Client counts to run, e.g. 1,2,4 (each on its own series)."
    )
    parser.add_argument(
        "--latency-batches", default="1000,100,10", help="Batch sizes of the latency probes."
    )
    args = parser.parse_args()
    print("\n".join(machine_report(sys.argv)))
    secret = new_secret()
    admin = token(secret, Role.ADMIN)
    start = datetime.now(UTC) - timedelta(days=25)
    counts = [int(x) for x in args.clients.split(",")]
    runs = {
        n: by_client(make_batches(args.batches, args.series, args.batch, start, f"c{n}"), n)
        for n in counts
    }
    total = args.batches * args.batch
    took: dict[int, float] = {}
    cpu: dict[int, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory() as work, embedded_mongo(Path(work)) as mongo:
        from benchmarks.harness import DATABASE

        asyncio.run(register(mongo.url, DATABASE))
        server = real_server(RealServerConfig(mongo.url, secret, "WARNING"), Path(work))
        with running(server):
            rule = {"name": "bench anomaly", "kind": "ANOMALY", "selector": "bench_metric",
                    "minScore": 0.99}  # fmt: skip
            probe_rule = {"name": "probe", "kind": "THRESHOLD", "selector": "probe_latency",
                          "op": ">", "threshold": 1000.0}  # fmt: skip
            for r in (rule, probe_rule):
                response = httpx.post(
                    server.graphql_url,
                    json={"query": RULE, "variables": {"rule": r}},
                    headers={"authorization": f"Bearer {admin}"},
                )
                assert "errors" not in response.json(), response.text
            assert mongo.process is not None
            for n, clients in runs.items():
                before = (cpu_seconds(server.pid), cpu_seconds(mongo.process.pid))
                took[n] = asyncio.run(ingest_run(server.graphql_url, admin, clients))
                after = (cpu_seconds(server.pid), cpu_seconds(mongo.process.pid))
                cpu[n] = (after[0] - before[0], after[1] - before[1])
            latencies = {
                size: sorted(
                    asyncio.run(
                        latency_run(server.ws_url, server.graphql_url, admin, args.probes, size)
                    )
                )
                for size in (int(x) for x in args.latency_batches.split(","))
            }
        storage_took: dict[tuple[int, str], float] = {}
        storage_cpu: dict[tuple[int, str], float] = {}
        for n, clients in runs.items():
            for layout in LAYOUTS:
                before_db = cpu_seconds(mongo.process.pid)
                storage_took[n, layout] = asyncio.run(storage_baseline(mongo.url, clients, layout))
                storage_cpu[n, layout] = cpu_seconds(mongo.process.pid) - before_db
    detector_took = detector_baseline([p for own in runs[counts[0]] for p in own])
    print()
    rows: list[list[object]] = []
    for n in counts:
        rows.append(
            [
                f"ingestMetrics, {n} client{'s' if n > 1 else ''} (detection + alert rule)",
                total,
                f"{took[n]:.2f}",
                f"{total / took[n]:,.0f}",
                f"{cpu[n][0] / total * 1e6:.0f}",
                f"{cpu[n][1] / total * 1e6:.0f}",
            ]
        )
        for layout, what in LAYOUTS.items():
            rows.append(
                [
                    f"baseline: insert_many, {what}, {n} inserter{'s' if n > 1 else ''}",
                    total,
                    f"{storage_took[n, layout]:.2f}",
                    f"{total / storage_took[n, layout]:,.0f}",
                    "",
                    f"{storage_cpu[n, layout] / total * 1e6:.0f}",
                ]
            )
    rows.append(
        [
            "baseline: SeriesDetector.score_one alone (1 core)",
            total,
            f"{detector_took:.2f}",
            f"{total / detector_took:,.0f}",
            "",
            "",
        ]
    )
    headers = ["path", "points", "seconds", "points/s", "server CPU us/pt", "nx-27017 CPU us/pt"]
    print(table(headers, rows))
    print()
    print(
        table(
            ["alert latency, ingest call -> WS event", "probes", "p50 ms", "p99 ms", "max ms"],
            [
                [
                    f"batch of {size}, 1 point over a threshold",
                    len(values),
                    f"{percentile(values, 50) * 1000:.0f}",
                    f"{percentile(values, 99) * 1000:.0f}",
                    f"{values[-1] * 1000:.0f}",
                ]
                for size, values in latencies.items()
            ],
        )
    )


if __name__ == "__main__":
    main()
