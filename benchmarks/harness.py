"""Shared plumbing for the benchmarks: child servers, the seeded database, machine facts.

Every process a benchmark starts is a child of the benchmark and is stopped by its pid
when the benchmark ends; all traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import platform
import resource
import secrets
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from tunelytics.config import Settings
from tunelytics.domain.auth import Role
from tunelytics.domain.demo import DemoSize
from tunelytics.seeding import seed_demo
from tunelytics.storage import connect
from tunelytics.storage.embedded import EmbeddedMongo, free_port
from tunelytics.tokens import mint_token

REPO = Path(__file__).resolve().parent.parent
BARE_SERVER = REPO / "benchmarks" / "bare_server.py"
TENANT = "bench"
DATABASE = "tunelytics_bench"
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --- the machine -------------------------------------------------------------------------


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _memory_gib() -> str:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024**2:.1f} GiB"
    return "unknown"


def machine_report(argv: Sequence[str]) -> list[str]:
    """What a reader needs to judge the figures: where, when, with what, how loaded."""
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        f"date:     {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC",
        f"command:  {shlex.join([Path(sys.executable).name, *argv])}",
        f"machine:  nproc={cores()}, cpu={_cpu_model()}, memory={_memory_gib()}",
        f"software: Python {platform.python_version()}, {platform.system()} {platform.release()}",
        f"load avg: {load} (1, 5, 15 min) at start; other users share this machine",
    ]


def cores() -> int:
    return len(os.sched_getaffinity(0))


def raise_open_files_limit() -> int:
    """Raise the soft limit on open files to the hard one: 1,000 sockets need it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far, from /proc (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # After the command name: state is field 3, utime field 14, stime field 15.
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def machine_busy_seconds() -> float:
    """CPU time all processes on the machine have used so far (all cores, from /proc/stat).

    Minus the benchmark's own processes it gives what other users of the machine took
    during a measurement: the noise a reader should know about.
    """
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / _CLOCK_TICKS


def cpu_percent(
    before: dict[str, float], after: dict[str, float], seconds: float
) -> dict[str, float]:
    """Per-process CPU use between two snapshots as % of one core, plus "others": what the
    rest of the machine used (the snapshots must hold a "machine" total)."""
    cpu = {k: (after[k] - before[k]) / seconds * 100 for k in after}
    cpu["others"] = max(0.0, cpu.pop("machine") - sum(cpu.values()))
    return cpu


# --- child servers -----------------------------------------------------------------------


@dataclass
class ChildServer:
    """A server in a child process, probed over HTTP until it answers."""

    name: str
    command: list[str]
    env: dict[str, str]
    log_path: Path
    probe_path: str
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def graphql_url(self) -> str:
        return f"{self.url}/graphql"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/graphql"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 60.0) -> ChildServer:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.command, env=self.env, stdout=log, stderr=log, stdin=subprocess.DEVNULL
        )
        log.close()  # the child holds its own descriptor
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited early; see {self.log_path}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + self.probe_path, timeout=1.0).status_code == 200:
                    return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer in {timeout:.0f} s; see {self.log_path}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass(frozen=True)
class RealServerConfig:
    mongo_url: str
    secret: str
    log_level: str = "INFO"


def real_server(config: RealServerConfig, log_dir: Path) -> ChildServer:
    """`tunelytics serve --no-demo`, started the way users start it."""
    port = free_port()
    env = {
        **os.environ,
        "MONGODB_URL": config.mongo_url,
        "MONGODB_DATABASE": DATABASE,
        "JWT_SECRET": config.secret,
        "REDIS_URL": "",
        "LOG_LEVEL": config.log_level,
        "TUNELYTICS_DATA_DIR": str(log_dir / "data"),
    }
    env.pop("JWT_ALGORITHM", None)
    command = [sys.executable, "-m", "tunelytics", "serve", "--no-demo", "--port", str(port)]
    return ChildServer("real server", command, env, log_dir / "real.log", "/readyz", port)


def bare_server(size: DemoSize, log_dir: Path) -> ChildServer:
    port = free_port()
    command = [
        sys.executable,
        str(BARE_SERVER),
        "--port",
        str(port),
        "--artists",
        str(size.artists),
        "--tracks",
        str(size.tracks),
        "--listeners",
        str(size.listeners),
        "--listens",
        str(size.listens),
    ]
    return ChildServer(
        "bare server", command, dict(os.environ), log_dir / "bare.log", "/healthz", port
    )


@contextlib.contextmanager
def running(server: ChildServer) -> Iterator[ChildServer]:
    server.start()
    try:
        yield server
    finally:
        server.stop()


# --- data and tokens ---------------------------------------------------------------------


@contextlib.contextmanager
def embedded_mongo(work_dir: Path) -> Iterator[EmbeddedMongo]:
    with EmbeddedMongo(work_dir / "mongo") as mongo:
        yield mongo


def seed(mongo_url: str, size: DemoSize) -> float:
    """Seed the benchmark tenant with the demo data; returns the seconds it took."""

    async def run() -> None:
        storage = connect(mongo_url, DATABASE)
        try:
            await seed_demo(storage, TENANT, name="Benchmark Records", size=size)
        finally:
            await storage.close()

    started = time.perf_counter()
    asyncio.run(run())
    return time.perf_counter() - started


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def token(secret: str, *roles: Role, subject: str = "bench") -> str:
    settings = Settings(jwt_secret=secret)
    return mint_token(
        settings, TENANT, roles or (Role.ADMIN,), subject=subject, ttl=timedelta(hours=2)
    )


# --- figures -----------------------------------------------------------------------------


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted sequence (nan when empty)."""
    if not ordered:
        return float("nan")
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table, so the printed output can go into docs/benchmarks.md as is."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 1) + ":" for w in widths) + "|"
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])
