"""Read throughput and latency of `tunelytics serve` against the bare Strawberry ceiling.

Starts an embedded MongoDB-wire server on a temporary directory, seeds the demo tenant,
starts the real server (`python -m tunelytics serve --no-demo`) and the bare server
(benchmarks/bare_server.py), checks that both answer the benchmark query with the same
data, then drives closed-loop load at each connection count against each server in turn
(real, then bare, so the two figures of a pair are taken minutes apart at most) and
prints a table with the real/bare ratio.

    .venv/bin/python benchmarks/graphql_read.py                      # full demo, ~4 min
    .venv/bin/python benchmarks/graphql_read.py --listens 20000 --duration 5   # quick
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import harness
import httpx
from loadgen import LoadResult, LoadSpec, run_load

from tunelytics.domain.auth import Role
from tunelytics.domain.demo import DemoSize

QUERY = (
    "query { tracks(first: 50) { edges { node { id title durationMs genres "
    "artist { id name } } } } }"
)
PAGE = 50
TARGET_RATIO = 0.60
TARGET_P99_MS = 50.0
TARGET_P99_CONNECTIONS = 8
# Results by (server name, connections), one per round.
Measurements = dict[tuple[str, int], list[LoadResult]]


@dataclass(frozen=True)
class Target:
    """One server under test: where it listens and how each connection authenticates."""

    name: str
    server: harness.ChildServer
    secret: str | None  # None: the server takes no token
    watch: tuple[tuple[str, int], ...]

    def tokens(self, connections: int, label: str) -> tuple[str | None, ...]:
        if self.secret is None:
            return (None,) * connections
        # One caller per connection, as separate clients would be: the real server's rate
        # limit (per token subject) then applies per connection, as in production.
        return tuple(
            harness.token(self.secret, Role.ADMIN, subject=f"bench-{label}-{i}")
            for i in range(connections)
        )

    def headers(self) -> dict[str, str]:
        if self.secret is None:
            return {}
        return {"Authorization": f"Bearer {harness.token(self.secret, Role.ADMIN)}"}


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=12.0, help="seconds measured per run")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before measuring")
    parser.add_argument("--connections", default="8,64", help="comma-separated counts")
    parser.add_argument(
        "--rounds", type=int, default=1, help="repeat each real/bare pair; medians are reported"
    )
    parser.add_argument(
        "--listens",
        type=int,
        default=DemoSize().listens,
        help="listens seeded (the catalogue is the full demo's whatever this is)",
    )
    parser.add_argument(
        "--log-level", default="INFO", help="LOG_LEVEL of the real server (INFO as shipped)"
    )
    return parser.parse_args(argv)


def check_response(body: dict[str, Any], name: str) -> dict[str, Any]:
    """The benchmark query's data, after checking it is a full, error-free page."""
    if body.get("errors"):
        raise SystemExit(f"{name} answered with errors: {body['errors']}")
    edges = body["data"]["tracks"]["edges"]
    if len(edges) != PAGE or any(edge["node"]["artist"] is None for edge in edges):
        raise SystemExit(f"{name} did not return {PAGE} tracks, each with its artist")
    data: dict[str, Any] = body["data"]
    return data


def reference_length(target: Target) -> tuple[int, dict[str, Any]]:
    """One request checked in full; its body length is what every response must have."""
    response = httpx.post(
        target.server.graphql_url, json={"query": QUERY}, headers=target.headers(), timeout=30
    )
    response.raise_for_status()
    return len(response.content), check_response(response.json(), target.name)


def measure(target: Target, connections: int, label: str, args: argparse.Namespace) -> LoadResult:
    length, _ = reference_length(target)
    spec = LoadSpec(
        port=target.server.port,
        body=json.dumps({"query": QUERY}).encode(),
        tokens=target.tokens(connections, label),
        warmup_s=args.warmup,
        duration_s=args.duration,
        expected_body_length=length,
        watch=target.watch,
    )
    return run_load(spec)


def _row(name: str, connections: int, results: list[LoadResult]) -> list[object]:
    latencies = _pooled(results)
    cpu = {
        key: statistics.median(r.cpu_percent.get(key, 0.0) for r in results)
        for key in ("server", "mongo", "loadgen", "others")
    }
    return [
        name,
        connections,
        f"{_median_rate(results):.0f}",
        f"{harness.percentile(latencies, 50):.1f}",
        f"{harness.percentile(latencies, 99):.1f}",
        sum(r.errors for r in results),
        f"{cpu['server']:.0f}",
        f"{cpu['mongo']:.0f}" if name == "real" else "-",
        f"{cpu['loadgen']:.0f}",
        f"{cpu['others']:.0f}",
    ]


def _pooled(results: list[LoadResult]) -> list[float]:
    return sorted(ms for r in results for ms in r.latencies_ms)


def _median_rate(results: list[LoadResult]) -> float:
    return statistics.median(r.requests_per_s for r in results)


def print_results(measurements: Measurements, counts: list[int]) -> None:
    rows = [_row(name, c, measurements[(name, c)]) for c in counts for name in ("real", "bare")]
    headers = ["server", "connections", "requests/s", "p50 ms", "p99 ms", "errors"]
    headers += ["server CPU %", "mongo CPU %", "loadgen CPU %", "others CPU %"]
    print("\n" + harness.table(headers, rows))
    print(
        "\nCPU %: share of one core over the measured window (this machine has "
        f"{harness.cores()}); others: every process that is not part of the benchmark.\n"
    )


def print_ratios(measurements: Measurements, counts: list[int]) -> None:
    rows = []
    for c in counts:
        real, bare = measurements[("real", c)], measurements[("bare", c)]
        ratio = _median_rate(real) / _median_rate(bare)
        p99_ratio = harness.percentile(_pooled(real), 99) / harness.percentile(_pooled(bare), 99)
        verdict = "yes" if ratio >= TARGET_RATIO else "no"
        rows.append([c, f"{_median_rate(real):.0f}", f"{_median_rate(bare):.0f}", f"{ratio:.2f}"])
        rows[-1] += [verdict, f"{p99_ratio:.2f}"]
    headers = ["connections", "real req/s", "bare req/s", "real/bare req/s"]
    headers += [f"req/s ratio >= {TARGET_RATIO:.2f}", "real/bare p99"]
    print(harness.table(headers, rows))


def print_verdicts(measurements: Measurements) -> None:
    for (name, c), results in measurements.items():
        for result in results:
            for sample in result.error_samples:
                print(f"error sample ({name}, {c} connections): {sample}")
    key = ("real", TARGET_P99_CONNECTIONS)
    if key in measurements:
        p99 = harness.percentile(_pooled(measurements[key]), 99)
        verdict = "met" if p99 < TARGET_P99_MS else "NOT met"
        print(
            f"\nreal p99 at {TARGET_P99_CONNECTIONS} connections: {p99:.1f} ms "
            f"(target < {TARGET_P99_MS:.0f} ms: {verdict})"
        )


def report(measurements: Measurements, counts: list[int]) -> None:
    print_results(measurements, counts)
    print_ratios(measurements, counts)
    print_verdicts(measurements)


def progress(name: str, connections: int, result: LoadResult) -> None:
    latencies = sorted(result.latencies_ms)
    print(
        f"  {name:4} {connections:3} conns: {result.requests_per_s:7.0f} req/s, "
        f"p50 {harness.percentile(latencies, 50):6.1f} ms, "
        f"p99 {harness.percentile(latencies, 99):6.1f} ms, errors {result.errors}, "
        f"cpu {json.dumps({k: round(v) for k, v in result.cpu_percent.items()})}",
        file=sys.stderr,
        flush=True,
    )


def measure_all(
    real: Target, bare: Target, counts: list[int], args: argparse.Namespace
) -> Measurements:
    measurements: Measurements = {}
    for c in counts:
        for round_ in range(args.rounds):
            # Alternate which server goes first, so drift in the machine's load over a
            # round does not favour one of them.
            for target in (real, bare) if round_ % 2 == 0 else (bare, real):
                result = measure(target, c, f"{c}-{round_}", args)
                progress(target.name, c, result)
                measurements.setdefault((target.name, c), []).append(result)
    return measurements


def print_log_problems(log_path: Path) -> None:
    problems = [
        line
        for line in log_path.read_text().splitlines()
        if '"level": "WARNING"' in line or '"level": "ERROR"' in line
    ]
    print(f"\nreal server log: {len(problems)} warning/error lines")
    for line in problems[:5]:
        print(f"  {line[:300]}")


def run(args: argparse.Namespace, work: Path) -> None:
    counts = [int(c) for c in args.connections.split(",")]
    size = DemoSize(listens=args.listens)
    with harness.embedded_mongo(work) as mongo:
        assert mongo.process is not None
        seconds = harness.seed(mongo.url, size)
        print(f"seeded:   {size} in {seconds:.0f} s")
        secret = harness.new_secret()
        config = harness.RealServerConfig(mongo.url, secret, args.log_level)
        with (
            harness.running(harness.real_server(config, work)) as real_server,
            harness.running(harness.bare_server(size, work)) as bare_server,
        ):
            real_watch = (("server", real_server.pid), ("mongo", mongo.process.pid))
            real = Target("real", real_server, secret, real_watch)
            bare = Target("bare", bare_server, None, (("server", bare_server.pid),))
            same = reference_length(real)[1] == reference_length(bare)[1]
            print(f"real and bare return the same data for the query: {'yes' if same else 'NO'}")
            report(measure_all(real, bare, counts, args), counts)
            print_log_problems(real_server.log_path)


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    print("\n".join(harness.machine_report(["benchmarks/graphql_read.py", *argv])))
    print(f"query:    {QUERY}")
    print(
        f"load:     {args.warmup:g} s warm-up + {args.duration:g} s measured per run, "
        f"{args.rounds} round(s), connections {args.connections}"
    )
    harness.raise_open_files_limit()
    with tempfile.TemporaryDirectory(prefix="tunelytics-bench-") as work:
        run(args, Path(work))


if __name__ == "__main__":
    main()
