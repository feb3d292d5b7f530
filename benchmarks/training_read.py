"""What a training job's data read does to the API's reads on the same database.

A recommender job reads the tenant's whole recent history. This benchmark seeds a tenant,
then runs that read while a probe issues the kind of small indexed read a GraphQL request
makes (one track by ID) every few milliseconds, and prints the probe's latency beside the
read's own duration, for the product's paged read (storage/training_data.py) and, as the
baseline, the same data through one `find` per collection (the read before paging).

    python benchmarks/training_read.py --listens 100000
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import (
    DATABASE,
    TENANT,
    embedded_mongo,
    machine_report,
    percentile,
    seed,
    table,
)
from tunelytics.domain.demo import DemoSize
from tunelytics.storage import Storage, connect
from tunelytics.storage.scope import tenant_scope
from tunelytics.storage.training_data import read_recommender_data

PROBE_EVERY_S = 0.005


async def one_find_read(storage: Storage, tenant_id: str) -> int:
    """The baseline: each collection in one cursor, as the read was before paging."""
    db, read = storage.db, 0
    track_fields = {"_id": 0, "id": 1, "artist_id": 1, "genres": 1, "duration_ms": 1, "audio": 1}
    listen_fields = {"_id": 0, "listener_id": 1, "track_id": 1, "ts": 1, "ms_played": 1}
    for name, fields in (("tracks", track_fields), ("listens", listen_fields)):
        async for _doc in db[name].find(tenant_scope(tenant_id), fields, batch_size=20_000):
            read += 1
    return read


async def paged_read(storage: Storage, tenant_id: str) -> int:
    data = await read_recommender_data(storage, tenant_id)
    return data.window.items + len(data.catalogue.track_ids)


async def measure(
    storage: Storage, read: Callable[[Storage, str], Awaitable[int]], track_ids: list[str]
) -> dict[str, Any]:
    latencies: list[float] = []
    done = asyncio.Event()

    async def probe() -> None:
        i = 0
        while not done.is_set():
            started = time.perf_counter()
            await storage.db["tracks"].find_one(
                tenant_scope(TENANT, id=track_ids[i % len(track_ids)]), {"_id": 0, "id": 1}
            )
            latencies.append((time.perf_counter() - started) * 1000)
            i += 1
            await asyncio.sleep(PROBE_EVERY_S)

    prober = asyncio.create_task(probe())
    await asyncio.sleep(0.5)  # the probe's quiet latency first
    started = time.perf_counter()
    documents = await read(storage, TENANT)
    seconds = time.perf_counter() - started
    done.set()
    await prober
    ordered = sorted(latencies)
    return {
        "read_s": seconds,
        "documents": documents,
        "p50": percentile(ordered, 50),
        "p99": percentile(ordered, 99),
        "max": ordered[-1],
        "probes": len(ordered),
    }


async def run(mongo_url: str, rounds: int) -> list[list[object]]:
    storage = connect(mongo_url, DATABASE)
    try:
        track_ids = [
            doc["id"]
            async for doc in storage.db["tracks"].find(tenant_scope(TENANT), {"_id": 0, "id": 1})
        ]
        rows: list[list[object]] = []
        for _ in range(rounds):  # alternated, so drift on a shared machine hits both
            for name, read in (("one find (baseline)", one_find_read), ("paged", paged_read)):
                m = await measure(storage, read, track_ids)
                rows.append(
                    [
                        name,
                        f"{m['documents']:,}",
                        f"{m['read_s']:.2f}",
                        f"{m['p50']:.1f}",
                        f"{m['p99']:.1f}",
                        f"{m['max']:.0f}",
                        m["probes"],
                    ]
                )
        return rows
    finally:
        await storage.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listens", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    print("\n".join(machine_report(sys.argv)))
    size = DemoSize(artists=60, tracks=2_000, listeners=2_000, listens=args.listens, days=120)
    with tempfile.TemporaryDirectory() as work, embedded_mongo(Path(work)) as mongo:
        print(f"seeding {args.listens:,} listens: {seed(mongo.url, size):.1f} s")
        rows = asyncio.run(run(mongo.url, args.rounds))
    headers = ["read", "documents", "read s", "probe p50 ms", "p99 ms", "max ms", "probes"]
    print(table(headers, rows))


if __name__ == "__main__":
    main()
