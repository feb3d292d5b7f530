"""A closed-loop HTTP/1.1 load generator that runs in its own process.

Each connection is kept alive and sends one request, waits for the whole response,
and sends the next. The client is a few lines over asyncio streams on uvloop, with the
request bytes built once: httpx or aiohttp spend several times more CPU per request,
and on a 2-core machine every cycle the generator burns is taken from the server.

Only requests that start after the warm-up and end before the window closes count.
A response counts as an error when its status is not 200, when it has a GraphQL
`errors` key, or when its body differs in length from the reference response the
caller checked in full (every response to the benchmark query is the same document).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import queue
import time
from dataclasses import dataclass, field
from multiprocessing.queues import Queue

import uvloop
from harness import cpu_percent, cpu_seconds, machine_busy_seconds

REQUEST_TIMEOUT_S = 30.0
MAX_ERROR_SAMPLES = 5


@dataclass(frozen=True)
class LoadSpec:
    port: int
    body: bytes
    # One bearer token per connection (None: no Authorization header).
    tokens: tuple[str | None, ...]
    warmup_s: float
    duration_s: float
    expected_body_length: int
    # Processes whose CPU use over the window is reported, by name.
    watch: tuple[tuple[str, int], ...] = ()

    @property
    def connections(self) -> int:
        return len(self.tokens)


@dataclass
class LoadResult:
    connections: int
    window_s: float
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    # Percent of one core used over the window, by process name ("loadgen" is this one,
    # "others" everything on the machine that is not part of the benchmark).
    cpu_percent: dict[str, float] = field(default_factory=dict)

    @property
    def requests_per_s(self) -> float:
        return len(self.latencies_ms) / self.window_s

    def error(self, reason: str) -> None:
        self.errors += 1
        if len(self.error_samples) < MAX_ERROR_SAMPLES:
            self.error_samples.append(reason[:300])


@dataclass(frozen=True)
class Window:
    start: float
    end: float

    def counts(self, started: float, finished: float) -> bool:
        return started >= self.start and finished <= self.end


def request_bytes(port: int, body: bytes, token: str | None) -> bytes:
    headers = [
        "POST /graphql HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Content-Type: application/json",
        "Accept: application/json",
        f"Content-Length: {len(body)}",
    ]
    if token is not None:
        headers.append(f"Authorization: Bearer {token}")
    return ("\r\n".join(headers) + "\r\n\r\n").encode() + body


def _content_length(head: bytes) -> int:
    for line in head.lower().split(b"\r\n"):
        if line.startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    # uvicorn sends Content-Length for Starlette's full responses; anything else is news.
    raise ValueError("response without Content-Length")


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    return status, await reader.readexactly(_content_length(head))


def problem(status: int, body: bytes, expected_length: int) -> str | None:
    """Why a response is not a clean answer to the benchmark query, or None."""
    if status != 200:
        return f"HTTP {status}: {body[:200]!r}"
    if b'"errors"' in body:
        return f"GraphQL errors: {body[:300]!r}"
    if len(body) != expected_length:
        return f"body of {len(body)} bytes, expected {expected_length}"
    return None


async def _connection(
    spec: LoadSpec, token: str | None, window: Window, result: LoadResult
) -> None:
    request = request_bytes(spec.port, spec.body, token)
    writer: asyncio.StreamWriter | None = None
    while time.perf_counter() < window.end:
        if writer is None:
            reader, writer = await asyncio.open_connection("127.0.0.1", spec.port)
        started = time.perf_counter()
        try:
            writer.write(request)
            status, body = await asyncio.wait_for(read_response(reader), REQUEST_TIMEOUT_S)
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as error:
            writer.close()
            writer = None
            if started >= window.start:
                result.error(f"{type(error).__name__}: {error}")
            continue
        finished = time.perf_counter()
        if not window.counts(started, finished):
            continue
        reason = problem(status, body, spec.expected_body_length)
        if reason is None:
            result.latencies_ms.append((finished - started) * 1000)
        else:
            result.error(reason)
    if writer is not None:
        writer.close()


def _cpu_snapshot(spec: LoadSpec) -> dict[str, float]:
    snapshot = {name: cpu_seconds(pid) for name, pid in spec.watch}
    snapshot["loadgen"] = time.process_time()
    snapshot["machine"] = machine_busy_seconds()
    return snapshot


async def _run(spec: LoadSpec) -> LoadResult:
    start = time.perf_counter() + spec.warmup_s
    window = Window(start=start, end=start + spec.duration_s)
    result = LoadResult(connections=spec.connections, window_s=spec.duration_s)
    tasks = [asyncio.create_task(_connection(spec, token, window, result)) for token in spec.tokens]
    await asyncio.sleep(max(0.0, window.start - time.perf_counter()))
    before = _cpu_snapshot(spec)
    await asyncio.sleep(max(0.0, window.end - time.perf_counter()))
    after = _cpu_snapshot(spec)
    # Each connection stops after its request in flight; a failed connect raises here.
    await asyncio.gather(*tasks)
    result.cpu_percent = cpu_percent(before, after, spec.duration_s)
    return result


def _main(spec: LoadSpec, results: Queue[LoadResult]) -> None:
    results.put(uvloop.run(_run(spec)))


def run_load(spec: LoadSpec) -> LoadResult:
    """Run the load in a fresh process so it shares no event loop with anything."""
    context = multiprocessing.get_context("spawn")
    results: Queue[LoadResult] = context.Queue()
    process = context.Process(target=_main, args=(spec, results), name="loadgen")
    process.start()
    # Generous: start-up, warm-up, window and the slowest request in flight.
    deadline = time.monotonic() + spec.warmup_s + spec.duration_s + REQUEST_TIMEOUT_S + 60
    try:
        while True:
            try:
                result = results.get(timeout=1.0)
                break
            except queue.Empty:
                # A generator that crashed (say, the server refused connections) says so
                # on stderr; stop waiting for it.
                if not process.is_alive() or time.monotonic() > deadline:
                    message = f"load generator gave no result (exit code {process.exitcode})"
                    raise RuntimeError(message) from None
    finally:
        process.join(timeout=30)
        if process.is_alive():
            process.kill()
    return result
