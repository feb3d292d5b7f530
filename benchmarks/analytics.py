"""Analytics snapshot: the per-listener pipelines on the database against the baseline of
reading every raw listen of the range with `find` and counting in Python.

    .venv/bin/python benchmarks/analytics.py --listens 50000 --days 28

Seeds a demo tenant on the embedded nx-27017 (or MONGODB_URL), then times each way three
times, checks both give the same snapshot, and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.test_analytics import raw_activity
from tunelytics.domain.analytics import day_range
from tunelytics.domain.demo import DemoSize
from tunelytics.domain.listening import Listen
from tunelytics.seeding import seed_demo
from tunelytics.storage import connect
from tunelytics.storage.analytics import AnalyticsRepository, seq_bound
from tunelytics.storage.embedded import EmbeddedMongo
from tunelytics.storage.scope import tenant_scope


async def bench(url: str, listens: int, days: int, repeats: int) -> None:
    storage = connect(url, "bench_analytics")
    await storage.client.drop_database("bench_analytics")
    await storage.ensure_indexes()
    size = DemoSize(artists=50, tracks=1000, listeners=max(listens // 200, 20), listens=listens,
                    days=90)  # fmt: skip
    demo = await seed_demo(storage, "bench", name="Bench", size=size, seed=7)
    r = day_range(demo.end - timedelta(days=days), demo.end)
    repo = AnalyticsRepository(storage.db)

    async def baseline() -> object:
        low = seq_bound(r.start - timedelta(days=29))
        query = tenant_scope("bench", seq={"$gte": low, "$lt": seq_bound(r.end)})
        docs = await storage.db["listens"].find(query).to_list()
        rows = [Listen(str(d["_id"]), d["listener_id"], d["track_id"], d["ts"], d["ms_played"],
                       d["skipped"], d["source"]) for d in docs]  # fmt: skip
        return raw_activity(demo.listeners, rows, r)

    results: dict[str, list[float]] = {}
    snapshots = {}
    for name, work in (("pipelines (storage/analytics.py)", lambda: repo.activity("bench", r)),
                       ("baseline: find raw listens + Python", baseline)):  # fmt: skip
        for _ in range(repeats):
            start = time.perf_counter()
            snapshots[name] = await work()
            results.setdefault(name, []).append(time.perf_counter() - start)
    a, b = snapshots.values()
    same = a.totals == b.totals and a.days_active == b.days_active  # type: ignore[attr-defined]
    in_range = sum(1 for li in demo.listens if r.start - timedelta(days=29) <= li.played_at < r.end)
    print(f"{listens} listens seeded, {days}-day range (+29 days for WAU/MAU windows: "
          f"{in_range} listens read), {repeats} runs, same snapshot: {same}")  # fmt: skip
    print("| way | median s | min s |\n|---|---|---|")
    for name, times in results.items():
        print(f"| {name} | {statistics.median(times):.2f} | {min(times):.2f} |")
    await storage.client.drop_database("bench_analytics")
    await storage.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--listens", type=int, default=50_000)
    parser.add_argument("--days", type=int, default=28)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if url := os.environ.get("MONGODB_URL"):
        asyncio.run(bench(url, args.listens, args.days, args.repeats))
        return
    with tempfile.TemporaryDirectory() as data, EmbeddedMongo(data) as mongo:
        asyncio.run(bench(mongo.url, args.listens, args.days, args.repeats))


if __name__ == "__main__":
    main()
