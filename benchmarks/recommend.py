"""Recommendation latency: in-process top-10 at 100,000 tracks, and through GraphQL.

In-process (torch threads set to --threads): a synthetic Recommender with a 100,000-track
catalogue (random factors in the trained model's layout: ALS 64 + EASE 256 + genre 64 +
popularity) answers top-10 for one listener at a time:

- "single, sequential": one call at a time, the floor for one request;
- "one call per request": --clients concurrent callers, each request its own call in the
  inference thread (no micro-batching);
- "micro-batched": the same callers through serving.MicroBatcher (1 ms window), as the
  server does.

Through GraphQL: an embedded MongoDB-wire server, the demo tenant seeded (--listens), the
real server (`tunelytics serve --no-demo`), a recommender trained and activated through
trainModel, then closed-loop load at each connection count on `recommendations(first: 10)`
side by side with the baseline `tracks(first: 10)` read of the same size, alternating.

    .venv/bin/python benchmarks/recommend.py                       # ~5 min
    .venv/bin/python benchmarks/recommend.py --skip-graphql --requests 500   # quick
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import harness
import httpx
import numpy as np
import torch
from loadgen import LoadResult, LoadSpec, run_load

from tunelytics.domain.auth import Role
from tunelytics.domain.demo import DemoSize
from tunelytics.domain.recommend import model as model_module
from tunelytics.domain.recommend.model import ComponentState, Recommender
from tunelytics.services.serving import MicroBatcher, batch_key, call_batch

TRACKS = 100_000
TARGET_IN_PROCESS_P99_MS = 10.0
TARGET_GRAPHQL_P99_MS = 50.0
TARGET_GRAPHQL_CONNECTIONS = 64
# Scores are left out: their last digits depend on which requests share a batch (BLAS
# sums in another order), and the load generator checks every response's length.
RECOMMEND = 'query { recommendations(listenerId: "%s", first: 10) { reason track { id title } } }'
BASELINE = "query { tracks(first: 10) { edges { node { id title } } } }"


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads in-process")
    parser.add_argument("--tracks", type=int, default=TRACKS)
    parser.add_argument("--listeners", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=2_000, help="per in-process mode")
    parser.add_argument("--clients", type=int, default=64, help="concurrent in-process callers")
    parser.add_argument(
        "--exact-scan",
        action="store_true",
        help="score every track exactly per request (the serving path before the compact stage)",
    )
    parser.add_argument("--skip-graphql", action="store_true")
    parser.add_argument("--skip-in-process", action="store_true")
    parser.add_argument("--listens", type=int, default=50_000, help="demo listens for GraphQL")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured per run")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--connections", default="8,64")
    parser.add_argument("--rounds", type=int, default=2)
    return parser.parse_args(argv)


# --- in-process ---------------------------------------------------------------------------


def synthetic_recommender(tracks: int, listeners: int, seed: int = 0) -> Recommender:
    """The trained model's serving layout with random factors: the same scan, top-k,
    exclusion and explanation work per request as a trained model of this size. Factor j
    of a component has scale 1 / sqrt(j + 1), a decaying spectrum like trained factors'
    (random isotropic factors would have none, which no trained model has)."""
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)

    def component(name: str, dims: int, weight: float) -> ComponentState:
        spectrum = (torch.arange(dims, dtype=torch.float32) + 1.0).rsqrt()
        items = torch.randn(tracks, dims, generator=g) * spectrum
        users = torch.randn(listeners, dims, generator=g)
        return ComponentState(name, users, items, items.clone(), weight)

    history = 50
    popularity = torch.rand(tracks, 1, generator=g)
    components = [
        component("als", 64, 0.4),
        component("ease", 256, 0.4),
        component("genre", 64, 0.1),
        ComponentState("popularity", torch.ones(listeners, 1), popularity, None, 0.1),
    ]
    return Recommender(
        listener_ids=[f"li-{i}" for i in range(listeners)],
        track_ids=[f"tr-{i}" for i in range(tracks)],
        artist_ids=[f"ar-{i}" for i in range(tracks // 20)],
        track_artist=torch.arange(tracks) // 20,
        history_indptr=torch.arange(0, (listeners + 1) * history, history),
        history_tracks=torch.from_numpy(rng.integers(0, tracks, listeners * history)),
        history_weights=torch.rand(listeners * history, generator=g),
        components=components,
    )


def exactness(model: Recommender, listeners: list[str]) -> float:
    """Share of the exact top-10 (every track scored, listened ones excluded) that the
    served path returns: 100% unless its compact retrieval stage misses tracks."""
    exact = model.scores(listeners)
    for b, lid in enumerate(listeners):
        exact[b, model.listener_history(model._listener_index[lid])[0]] = -torch.inf
    truth = torch.topk(exact, 10, dim=1).indices.tolist()
    served = model.recommend(listeners, 10)
    found = sum(
        len({model.track_ids[i] for i in t} & {r.track_id for r in s or []})
        for t, s in zip(truth, served, strict=True)
    )
    return found / (10 * len(listeners))


def summary(name: str, latencies_ms: list[float], seconds: float) -> list[object]:
    ordered = sorted(latencies_ms)
    return [
        name,
        len(ordered),
        f"{len(ordered) / seconds:.0f}",
        f"{harness.percentile(ordered, 50):.2f}",
        f"{harness.percentile(ordered, 99):.2f}",
    ]


async def closed_loop(
    clients: int, requests: int, call: Any, listeners: list[str]
) -> tuple[list[float], float]:
    latencies: list[float] = []
    remaining = iter(range(requests))

    async def client() -> None:
        for i in remaining:
            started = time.perf_counter()
            result = await call(listeners[i % len(listeners)])
            latencies.append((time.perf_counter() - started) * 1000)
            assert result is not None and len(result) == 10

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return latencies, time.perf_counter() - started


def in_process(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    if args.exact_scan:
        model_module.EXACT_SCAN_FLOATS = 1 << 62
    started = time.perf_counter()
    model = synthetic_recommender(args.tracks, args.listeners)
    built = time.perf_counter() - started
    print(f"\nin-process: synthetic model, {args.tracks:,} tracks, {args.listeners:,} "
          f"listeners, torch threads {args.threads}, built in {built:.1f} s")  # fmt: skip
    listeners = [f"li-{i}" for i in range(0, args.listeners, 7)]
    key = batch_key(
        "recommend", {"k": 10, "exclude_listened": True, "diversity": 0.0, "max_per_artist": None}
    )
    for lid in listeners[:20]:  # warm-up
        call_batch(model, key, [lid])

    rows: list[list[object]] = []
    latencies: list[float] = []
    t0 = time.perf_counter()
    for i in range(args.requests):
        s = time.perf_counter()
        call_batch(model, key, [listeners[i % len(listeners)]])
        latencies.append((time.perf_counter() - s) * 1000)
    rows.append(summary("single, sequential", latencies, time.perf_counter() - t0))

    async def modes() -> None:
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(1, thread_name_prefix="inference") as executor:

            async def unbatched(lid: str) -> Any:
                return (await loop.run_in_executor(executor, call_batch, model, key, [lid]))[0]

            lat, secs = await closed_loop(args.clients, args.requests, unbatched, listeners)
            rows.append(summary(f"{args.clients} clients, one call per request", lat, secs))

            batcher: MicroBatcher[str, Any] = MicroBatcher(
                lambda k, items: call_batch(model, k, items), executor, 0.001, 64
            )

            async def batched(lid: str) -> Any:
                return await batcher.submit(key, lid)

            lat, secs = await closed_loop(args.clients, args.requests, batched, listeners)
            rows.append(summary(f"{args.clients} clients, micro-batched", lat, secs))
            print(f"micro-batcher: {batcher.items} requests in {batcher.batches} batches "
                  f"({batcher.items / max(batcher.batches, 1):.1f} per batch)")  # fmt: skip

    asyncio.run(modes())
    print(harness.table(["mode", "requests", "requests/s", "p50 ms", "p99 ms"], rows))
    print(f"served top-10 vs an exact scan of every track: {exactness(model, listeners[:200]):.1%} "
          "of the exact top-10 returned")  # fmt: skip
    p99 = harness.percentile(sorted(latencies), 99)
    verdict = "met" if p99 < TARGET_IN_PROCESS_P99_MS else "NOT met"
    print(f"single top-10 p99 at {args.tracks:,} tracks: {p99:.2f} ms "
          f"(target < {TARGET_IN_PROCESS_P99_MS:.0f} ms: {verdict})")  # fmt: skip


# --- through GraphQL ----------------------------------------------------------------------


def graphql(args: argparse.Namespace, work: Path) -> None:
    counts = [int(c) for c in args.connections.split(",")]
    size = DemoSize(listens=args.listens)
    with harness.embedded_mongo(work) as mongo:
        assert mongo.process is not None
        print(f"\nseeded:   {size} in {harness.seed(mongo.url, size):.0f} s")
        secret = harness.new_secret()
        config = harness.RealServerConfig(mongo.url, secret, "WARNING")
        with harness.running(harness.real_server(config, work)) as server:
            admin = harness.token(secret, Role.ADMIN)
            listener = train(server, admin)
            queries = {
                "recommendations(first: 10)": RECOMMEND % listener,
                "tracks(first: 10)": BASELINE,
            }
            watch = (("server", server.pid), ("mongo", mongo.process.pid))
            results: dict[tuple[str, int], list[LoadResult]] = {}
            for c in counts:
                for round_ in range(args.rounds):
                    names = list(queries) if round_ % 2 == 0 else list(reversed(queries))
                    for name in names:
                        result = measure(
                            server, queries[name], secret, c, f"{c}-{round_}", watch, args
                        )
                        results.setdefault((name, c), []).append(result)
                        lat = sorted(result.latencies_ms)
                        print(f"  {name:28} {c:3} conns: {result.requests_per_s:6.0f} req/s, "
                              f"p50 {harness.percentile(lat, 50):6.1f} ms, "
                              f"p99 {harness.percentile(lat, 99):6.1f} ms, errors {result.errors}",
                              file=sys.stderr, flush=True)  # fmt: skip
            report(results, counts, list(queries))


def train(server: harness.ChildServer, admin: str) -> str:
    """Train and activate a recommender through GraphQL; returns a listener to ask for."""
    headers = {"Authorization": f"Bearer {admin}"}

    def post(query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        response = httpx.post(
            server.graphql_url,
            json={"query": query, "variables": variables or {}},
            headers=headers,
            timeout=60,
        )
        body: dict[str, Any] = response.json()
        assert "errors" not in body, body
        data: dict[str, Any] = body["data"]
        return data

    started = time.perf_counter()
    job = post("mutation { trainModel(kind: RECOMMENDER, activate: true) { id } }")["trainModel"]
    while True:
        state = post(
            "query($id: ID!) { job(id: $id) { status progress error } }", {"id": job["id"]}
        )
        if state["job"]["status"] in ("SUCCEEDED", "FAILED"):
            break
        time.sleep(1.0)
    assert state["job"]["status"] == "SUCCEEDED", state
    print(f"trained:  recommender through trainModel in {time.perf_counter() - started:.0f} s")
    return "li-00001"


def measure(
    server: harness.ChildServer,
    query: str,
    secret: str,
    connections: int,
    label: str,
    watch: tuple[tuple[str, int], ...],
    args: argparse.Namespace,
) -> LoadResult:
    body = json.dumps({"query": query}).encode()
    admin = harness.token(secret, Role.ADMIN)
    response = httpx.post(
        server.graphql_url, content=body, timeout=30,
        headers={"Authorization": f"Bearer {admin}", "Content-Type": "application/json"},
    )  # fmt: skip
    assert "errors" not in response.json(), response.text
    tokens = tuple(
        harness.token(secret, Role.ADMIN, subject=f"bench-{label}-{i}") for i in range(connections)
    )
    spec = LoadSpec(
        port=server.port,
        body=body,
        tokens=tokens,
        warmup_s=args.warmup,
        duration_s=args.duration,
        expected_body_length=len(response.content),
        watch=watch,
    )
    return run_load(spec)


def report(
    results: dict[tuple[str, int], list[LoadResult]], counts: list[int], names: list[str]
) -> None:
    rows = []
    for c in counts:
        for name in names:
            runs = results[(name, c)]
            lat = sorted(ms for r in runs for ms in r.latencies_ms)
            cpu = {k: statistics.median(r.cpu_percent.get(k, 0.0) for r in runs)
                   for k in ("server", "mongo", "others")}  # fmt: skip
            rows.append([
                name, c, f"{statistics.median(r.requests_per_s for r in runs):.0f}",
                f"{harness.percentile(lat, 50):.1f}", f"{harness.percentile(lat, 99):.1f}",
                sum(r.errors for r in runs), f"{cpu['server']:.0f}", f"{cpu['mongo']:.0f}",
                f"{cpu['others']:.0f}",
            ])  # fmt: skip
    headers = ["query", "connections", "requests/s", "p50 ms", "p99 ms", "errors"]
    print("\n" + harness.table([*headers, "server CPU %", "mongo CPU %", "others CPU %"], rows))
    key = (names[0], TARGET_GRAPHQL_CONNECTIONS)
    if key in results:
        p99 = harness.percentile(sorted(ms for r in results[key] for ms in r.latencies_ms), 99)
        verdict = "met" if p99 < TARGET_GRAPHQL_P99_MS else "NOT met"
        print(f"recommendations p99 at {TARGET_GRAPHQL_CONNECTIONS} connections: {p99:.1f} ms "
              f"(target < {TARGET_GRAPHQL_P99_MS:.0f} ms: {verdict})")  # fmt: skip


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    print("\n".join(harness.machine_report(["benchmarks/recommend.py", *argv])))
    if not args.skip_in_process:
        in_process(args)
    if not args.skip_graphql:
        harness.raise_open_files_limit()
        with tempfile.TemporaryDirectory(prefix="tunelytics-bench-") as work:
            graphql(args, Path(work))


if __name__ == "__main__":
    main()
