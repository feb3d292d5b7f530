"""Delivery latency of the `listens` subscription to 1,000 WebSocket subscribers.

Starts an embedded MongoDB-wire server with a small seeded tenant, the real server and
the bare server (benchmarks/bare_server.py). For each server in turn it opens the
subscribers (graphql-transport-ws, spread over several client processes so the client
side is not what is measured), waits until every one of them has received a probe event
(the protocol has no "subscribed" acknowledgement), then publishes listens one at a time
at a fixed pace through `recordListens` over HTTP and measures, for each subscriber and
listen, the time from the publish request's send to the subscriber's receipt.

Clocks: the publisher records time.time() before it sends each request and keys it by
the listen id the server returns; each subscriber records time.time() on receipt per
listen id; the two are joined at the end. All processes share this machine's clock.

    .venv/bin/python benchmarks/subscriptions.py                      # 1,000 subscribers
    .venv/bin/python benchmarks/subscriptions.py --subscribers 100 --events 10   # quick
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import queue
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.context import SpawnProcess
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import harness
import httpx
import uvloop
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from tunelytics.domain.auth import Role
from tunelytics.domain.demo import DemoSize

SUBSCRIPTION = "subscription { listens { id trackId playedAt } }"
MUTATION = (
    "mutation($l:[ListenInput!]!){ recordListens(listens:$l){ listens{id} "
    "rejected{index message} } }"
)
# A small tenant: the subscription benchmark needs valid IDs, not a big history.
SIZE = DemoSize(artists=10, tracks=100, listeners=50, listens=500)
PROTOCOL = Subprotocol("graphql-transport-ws")
# Opening 1,000 sockets at once overflows accept queues; a few at a time per process.
CONNECT_CONCURRENCY = 25
TARGET_P99_MS = 100.0
MAX_ERROR_SAMPLES = 5


# --- subscriber processes ------------------------------------------------------------------


@dataclass
class SubscriberState:
    """What one client process has seen; sent to the parent at the end."""

    index: int
    subscribed: int = 0
    ready: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    # (listen id, receipt time.time()) for every event every socket of the process got.
    receipts: list[tuple[str, float]] = field(default_factory=list)

    def error(self, reason: str) -> None:
        self.errors += 1
        if len(self.error_samples) < MAX_ERROR_SAMPLES:
            self.error_samples.append(reason[:300])


@dataclass(frozen=True)
class ClientSpec:
    url: str
    token: str | None
    sockets: int


async def _open(spec: ClientSpec, gate: asyncio.Semaphore) -> ClientConnection:
    async with gate:
        ws = await connect(
            spec.url, subprotocols=[PROTOCOL], ping_interval=None, open_timeout=120, max_queue=None
        )
        payload = {"Authorization": f"Bearer {spec.token}"} if spec.token else {}
        await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
        ack = json.loads(await ws.recv())
        if ack.get("type") != "connection_ack":
            raise RuntimeError(f"no connection_ack: {ack}")
        await ws.send(
            json.dumps({"id": "1", "type": "subscribe", "payload": {"query": SUBSCRIPTION}})
        )
        return ws


def _on_message(raw: str | bytes, received: float, state: SubscriberState) -> bool:
    """Record one protocol message; True when it was an event."""
    message = json.loads(raw)
    kind = message.get("type")
    if kind == "next":
        payload = message["payload"]
        if not payload.get("errors"):
            state.receipts.append((payload["data"]["listens"]["id"], received))
            return True
        state.error(f"next with errors: {payload['errors']}")
    elif kind in ("error", "complete"):
        state.error(f"{kind}: {message}")
    return False


async def _listen(ws: ClientConnection, state: SubscriberState) -> None:
    waiting_for_first = True
    async for raw in ws:
        # Stamp first: parsing is the client's cost, not the server's delivery time.
        received = time.time()
        if _on_message(raw, received, state) and waiting_for_first:
            waiting_for_first = False
            state.ready += 1


async def _client(spec: ClientSpec, state: SubscriberState, stop: Event) -> None:
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    opened = await asyncio.gather(
        *(_open(spec, gate) for _ in range(spec.sockets)), return_exceptions=True
    )
    sockets = [ws for ws in opened if isinstance(ws, ClientConnection)]
    for failure in opened:
        if isinstance(failure, BaseException):
            state.error(f"connect: {type(failure).__name__}: {failure}")
    state.subscribed = len(sockets)
    listeners = [asyncio.create_task(_listen(ws, state)) for ws in sockets]
    # The stop signal is a process-shared Event: wait for it off the event loop.
    await asyncio.to_thread(stop.wait)
    for task in listeners:
        task.cancel()
    await asyncio.gather(*listeners, return_exceptions=True)
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)


def _report_progress(state: SubscriberState, updates: Queue[Any], stop: Event) -> None:
    """Tell the parent, from a thread, how many sockets are subscribed and ready."""
    last = (-1, -1)
    while not stop.wait(0.1):
        now = (state.subscribed, state.ready)
        if now != last:
            updates.put(("progress", state.index, *now))
            last = now


def client_main(spec: ClientSpec, index: int, updates: Queue[Any], stop: Event) -> None:
    harness.raise_open_files_limit()
    state = SubscriberState(index)
    reporter = threading.Thread(target=_report_progress, args=(state, updates, stop), daemon=True)
    reporter.start()
    uvloop.run(_client(spec, state, stop))
    reporter.join()
    updates.put(("result", index, state))


# --- the publisher and the run for one server ----------------------------------------------


@dataclass(frozen=True)
class Target:
    name: str
    server: harness.ChildServer
    secret: str | None
    watch: tuple[tuple[str, int], ...]

    def token(self, *roles: Role) -> str | None:
        return harness.token(self.secret, *roles) if self.secret else None


@dataclass
class ServerResult:
    name: str
    subscribers: int
    expected: int
    latencies_ms: list[float]
    publish_ms: list[float]
    fanout_ms: list[float]
    # Per event, in publish order: (first, median, last) receipt latency in ms.
    per_event: list[tuple[float, float, float]]
    errors: int
    error_samples: list[str]
    cpu_percent: dict[str, float]
    rss_mib: float
    setup_s: float


class Clients:
    """The subscriber processes and what they report."""

    def __init__(self, url: str, token: str | None, subscribers: int, processes: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.updates: Queue[Any] = context.Queue()
        self.stop = context.Event()
        shares = [
            subscribers // processes + (i < subscribers % processes) for i in range(processes)
        ]
        self.processes: list[SpawnProcess] = [
            context.Process(
                target=client_main,
                args=(ClientSpec(url, token, share), i, self.updates, self.stop),
                name=f"subscribers-{i}",
            )
            for i, share in enumerate(shares)
        ]
        self.progress = {i: (0, 0) for i in range(processes)}
        self.states: dict[int, SubscriberState] = {}

    def start(self) -> None:
        for process in self.processes:
            process.start()

    def poll(self) -> None:
        while True:
            try:
                message = self.updates.get_nowait()
            except queue.Empty:
                return
            if message[0] == "progress":
                self.progress[message[1]] = (message[2], message[3])
            else:
                self.states[message[1]] = message[2]

    def counts(self) -> tuple[int, int]:
        self.poll()
        return (
            sum(s for s, _ in self.progress.values()),
            sum(r for _, r in self.progress.values()),
        )

    def cpu_seconds(self) -> float:
        return sum(harness.cpu_seconds(p.pid) for p in self.processes if p.pid)

    def finish(self, timeout: float = 60.0) -> list[SubscriberState]:
        self.stop.set()
        deadline = time.monotonic() + timeout
        while len(self.states) < len(self.processes) and time.monotonic() < deadline:
            self.poll()
            time.sleep(0.05)
        for process in self.processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
        return list(self.states.values())


def listen_input(n: int) -> dict[str, Any]:
    # Valid IDs of the seeded tenant (and of the bare server's catalogue of the same size).
    return {
        "listenerId": f"li-{n % SIZE.listeners + 1:05d}",
        "trackId": f"tr-{n % 10 + 1:05d}",
        "msPlayed": 95_000,
    }


async def publish(client: httpx.AsyncClient, target: Target, token: str | None, n: int) -> str:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = await client.post(
        target.server.graphql_url,
        json={"query": MUTATION, "variables": {"l": [listen_input(n)]}},
        headers=headers,
    )
    body = response.json()
    payload = (body.get("data") or {}).get("recordListens")
    if body.get("errors") or not payload or payload["rejected"] or not payload["listens"]:
        raise RuntimeError(f"{target.name}: recordListens failed: {body}")
    listen_id: str = payload["listens"][0]["id"]
    return listen_id


async def wait_ready(
    client: httpx.AsyncClient, target: Target, token: str | None, clients: Clients, wanted: int
) -> None:
    """Publish probes until every subscriber has received one: then all are live."""
    deadline = time.monotonic() + 120
    probe = 0
    while clients.counts()[1] < wanted:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{target.name}: only {clients.counts()[1]}/{wanted} ready")
        await publish(client, target, token, probe)
        probe += 1
        await asyncio.sleep(0.5)


async def publish_series(
    client: httpx.AsyncClient, target: Target, token: str | None, events: int, interval: float
) -> tuple[dict[str, float], list[float]]:
    """Publish one listen every `interval` seconds; returns send times by id, round trips."""
    sent_at: dict[str, float] = {}
    round_trips: list[float] = []
    start = time.monotonic()
    for n in range(events):
        await asyncio.sleep(max(0.0, start + n * interval - time.monotonic()))
        sent = time.time()
        listen_id = await publish(client, target, token, 1_000 + n)
        round_trips.append((time.time() - sent) * 1000)
        sent_at[listen_id] = sent
    return sent_at, round_trips


def wait_subscribed(clients: Clients, wanted: int, name: str) -> None:
    deadline = time.monotonic() + 180
    while clients.counts()[0] < wanted:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name}: only {clients.counts()[0]}/{wanted} subscribed")
        if any(p.exitcode not in (None, 0) for p in clients.processes):
            raise RuntimeError(f"{name}: a subscriber process failed")
        time.sleep(0.1)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_snapshot(target: Target, clients: Clients) -> dict[str, float]:
    snapshot = {name: harness.cpu_seconds(pid) for name, pid in target.watch}
    snapshot["clients"] = clients.cpu_seconds()
    snapshot["publisher"] = time.process_time()
    snapshot["machine"] = harness.machine_busy_seconds()
    return snapshot


async def drive(
    target: Target, clients: Clients, args: argparse.Namespace
) -> tuple[dict[str, float], list[float], dict[str, float]]:
    """Probe until all subscribers are live, then publish the measured series."""
    token = target.token(Role.INGEST)
    async with httpx.AsyncClient(timeout=60) as client:
        await wait_ready(client, target, token, clients, args.subscribers)
        before = cpu_snapshot(target, clients)
        window = time.monotonic()
        sent_at, trips = await publish_series(client, target, token, args.events, args.interval)
        await asyncio.sleep(args.drain)
        cpu = harness.cpu_percent(before, cpu_snapshot(target, clients), time.monotonic() - window)
    return sent_at, trips, cpu


def run_target(target: Target, args: argparse.Namespace) -> ServerResult:
    started = time.monotonic()
    clients = Clients(
        target.server.ws_url, target.token(Role.VIEWER), args.subscribers, args.processes
    )
    clients.start()
    try:
        wait_subscribed(clients, args.subscribers, target.name)
        sent_at, trips, cpu = asyncio.run(drive(target, clients, args))
        # Set-up: start of the subscriber processes to every subscriber live (and the
        # measured window, which is fixed: events x interval + drain).
        setup = time.monotonic() - started - (args.events * args.interval + args.drain)
        rss = rss_mib(target.server.pid)
    finally:
        states = clients.finish()
    return summarise(target.name, args.subscribers, sent_at, trips, cpu, rss, setup, states)


def summarise(
    name: str,
    subscribers: int,
    sent_at: dict[str, float],
    trips: list[float],
    cpu: dict[str, float],
    rss: float,
    setup: float,
    states: list[SubscriberState],
) -> ServerResult:
    by_event: dict[str, list[float]] = {}
    for state in states:
        for listen_id, received in state.receipts:
            if listen_id in sent_at:
                by_event.setdefault(listen_id, []).append((received - sent_at[listen_id]) * 1000)
    latencies = sorted(ms for event in by_event.values() for ms in event)
    return ServerResult(
        name=name,
        subscribers=subscribers,
        expected=len(sent_at) * subscribers,
        latencies_ms=latencies,
        publish_ms=sorted(trips),
        # How long one event takes to reach everyone, first receipt to last.
        fanout_ms=sorted(max(e) - min(e) for e in by_event.values()),
        per_event=[
            (min(e), statistics.median(e), max(e))
            for e in (by_event.get(listen_id, [float("nan")]) for listen_id in sent_at)
        ],
        errors=sum(s.errors for s in states),
        error_samples=[sample for s in states for sample in s.error_samples][:MAX_ERROR_SAMPLES],
        cpu_percent=cpu,
        rss_mib=rss,
        setup_s=setup,
    )


# --- the report ------------------------------------------------------------------------------


def _row(r: ServerResult) -> list[object]:
    pct = harness.percentile
    return [
        r.name,
        r.subscribers,
        f"{len(r.latencies_ms)}/{r.expected}",
        f"{pct(r.latencies_ms, 50):.1f}",
        f"{pct(r.latencies_ms, 99):.1f}",
        f"{r.latencies_ms[-1] if r.latencies_ms else float('nan'):.1f}",
        f"{pct(r.fanout_ms, 50):.1f}",
        f"{pct(r.publish_ms, 50):.1f}",
        r.errors,
        f"{r.cpu_percent.get('server', 0):.0f}",
        f"{r.cpu_percent.get('clients', 0):.0f}",
        f"{r.cpu_percent.get('others', 0):.0f}",
        f"{r.rss_mib:.0f}",
        f"{r.setup_s:.0f}",
    ]


def report(results: list[ServerResult], per_event: bool) -> None:
    headers = [
        "server",
        "subscribers",
        "delivered",
        "p50 ms",
        "p99 ms",
        "max ms",
        "fan-out p50 ms",
        "publish RTT p50 ms",
        "errors",
        "server CPU %",
        "clients CPU %",
        "others CPU %",
        "server RSS MiB",
        "setup s",
    ]
    print("\n" + harness.table(headers, [_row(r) for r in results]))
    print(
        "\nlatency: publish request sent -> event received, per subscriber and event; "
        "fan-out: first to last subscriber of one event; CPU %: share of one core while "
        "publishing; others: every process that is not part of the benchmark."
    )
    by_name = {r.name: r for r in results}
    if "real" in by_name and "bare" in by_name:
        real, bare = by_name["real"], by_name["bare"]
        for q in (50, 99):
            ratio = harness.percentile(real.latencies_ms, q) / harness.percentile(
                bare.latencies_ms, q
            )
            print(f"real / bare p{q} latency: {ratio:.2f}")
    if "real" in by_name:
        real = by_name["real"]
        p99 = harness.percentile(real.latencies_ms, 99)
        complete = len(real.latencies_ms) == real.expected and real.errors == 0
        met = complete and p99 < TARGET_P99_MS
        print(
            f"target ({real.subscribers} subscribers, every event delivered, "
            f"p99 < {TARGET_P99_MS:.0f} ms): {'met' if met else 'NOT met'} "
            f"(p99 {p99:.1f} ms, delivered {len(real.latencies_ms)}/{real.expected})"
        )
    if per_event:
        for r in results:
            print(f"\n{r.name}: per event, first/median/last receipt in ms:")
            print("  " + ", ".join(f"{a:.0f}/{m:.0f}/{z:.0f}" for a, m, z in r.per_event))
    for r in results:
        for sample in r.error_samples:
            print(f"error sample ({r.name}): {sample}")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=1_000)
    parser.add_argument("--processes", type=int, default=4, help="subscriber processes")
    parser.add_argument("--events", type=int, default=40, help="listens published, measured")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between publishes")
    parser.add_argument("--drain", type=float, default=5.0, help="seconds to wait after the last")
    parser.add_argument("--log-level", default="INFO", help="LOG_LEVEL of the real server")
    parser.add_argument(
        "--per-event", action="store_true", help="also print each event's latency spread"
    )
    return parser.parse_args(argv)


def run(args: argparse.Namespace, work: Path) -> None:
    with harness.embedded_mongo(work) as mongo:
        seconds = harness.seed(mongo.url, SIZE)
        print(f"seeded: {SIZE} in {seconds:.0f} s")
        assert mongo.process is not None
        secret = harness.new_secret()
        config = harness.RealServerConfig(mongo.url, secret, args.log_level)
        results = []
        # One server at a time, so the two never compete for the machine.
        with harness.running(harness.real_server(config, work)) as server:
            target = Target(
                "real", server, secret, (("server", server.pid), ("mongo", mongo.process.pid))
            )
            results.append(run_target(target, args))
            print(f"  real done: {_row(results[-1])}", file=sys.stderr, flush=True)
        with harness.running(harness.bare_server(SIZE, work)) as server:
            target = Target("bare", server, None, (("server", server.pid),))
            results.append(run_target(target, args))
            print(f"  bare done: {_row(results[-1])}", file=sys.stderr, flush=True)
        report(results, args.per_event)


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    print("\n".join(harness.machine_report(["benchmarks/subscriptions.py", *argv])))
    print(f"subscription: {SUBSCRIPTION}")
    print(
        f"load:         {args.subscribers} subscribers in {args.processes} processes, "
        f"{args.events} listens published one every {args.interval:g} s"
    )
    limit = harness.raise_open_files_limit()
    print(f"open files:   soft limit {limit}")
    with tempfile.TemporaryDirectory(prefix="tunelytics-bench-") as work:
        run(args, Path(work))


if __name__ == "__main__":
    main()
