"""Real processes for tests: the API under uvicorn, a GraphQL client, tenants with data."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import websockets
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import ClientConnection
from websockets.typing import Subprotocol

from tunelytics.config import Settings
from tunelytics.domain.auth import Role
from tunelytics.domain.demo import Demo
from tunelytics.storage.embedded import free_port
from tunelytics.tokens import mint_token

TEST_SECRET = "test-secret-with-enough-entropy-0123456789"
SETTINGS = Settings(jwt_secret=TEST_SECRET)


def token(
    tenant: str, *roles: Role | str, ttl: timedelta = timedelta(hours=1), subject: str = "tester"
) -> str:
    return mint_token(SETTINGS, tenant, roles or (Role.ADMIN,), subject=subject, ttl=ttl)


class ApiServer:
    """`tunelytics serve` in a child process, exactly as users start it."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.log_path = log_path
        self.env = {**os.environ, "JWT_SECRET": TEST_SECRET, "LOG_LEVEL": "INFO", **env}
        self.env.pop("JWT_ALGORITHM", None)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def graphql_url(self) -> str:
        return f"{self.url}/graphql"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/graphql"

    def start(self, timeout: float = 120.0, expect_ready: bool = True) -> ApiServer:
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tunelytics", "serve", "--no-demo", "--port", str(self.port)],
            env=self.env,
            stdout=log,
            stderr=log,
        )
        deadline = time.monotonic() + timeout
        probe = "/readyz" if expect_ready else "/healthz"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log_path.read_text()}")
            try:
                if httpx.get(self.url + probe, timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not become ready:\n{self.log_path.read_text()}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log_lines(self) -> list[str]:
        return self.log_path.read_text().splitlines()


@dataclass
class Api:
    """A thin GraphQL-over-HTTP client that returns the whole response body."""

    url: str
    client: httpx.AsyncClient = field(default_factory=lambda: httpx.AsyncClient(timeout=30.0))

    async def post(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        all_headers = dict(headers or {})
        if token is not None:
            all_headers["Authorization"] = f"Bearer {token}"
        response = await self.client.post(
            self.url, json={"query": query, "variables": variables or {}}, headers=all_headers
        )
        assert response.headers["content-type"].startswith("application/json"), response.text
        body: dict[str, Any] = response.json()
        return body

    async def data(
        self, query: str, variables: dict[str, Any] | None = None, token: str | None = None
    ) -> dict[str, Any]:
        """The data of a response that must have no errors."""
        body = await self.post(query, variables, token)
        assert "errors" not in body, body["errors"]
        result: dict[str, Any] = body["data"]
        return result


def codes(body: dict[str, Any]) -> list[str]:
    return [error["extensions"]["code"] for error in body.get("errors", [])]


# --- Live listens: recording them, and subscribing over WebSocket -------------------------

RECORD_LISTENS = """
mutation Record($listens: [ListenInput!]!) {
  recordListens(listens: $listens) {
    listens { id trackId listenerId msPlayed }
    rejected { index code message }
  }
}
"""

SUBSCRIBE_LISTENS = """
subscription Listens($trackId: ID) {
  listens(trackId: $trackId) { id trackId listenerId msPlayed track { id title } }
}
"""


async def record_listens(
    api: Api, token: str, listens: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Records listens that must all be stored; returns them as stored, in order."""
    payload = (await api.data(RECORD_LISTENS, {"listens": listens}, token))["recordListens"]
    assert payload["rejected"] == [], payload["rejected"]
    stored: list[dict[str, Any]] = payload["listens"]
    assert len(stored) == len(listens)
    return stored


class TransportWs:
    """One graphql-transport-ws connection, the protocol spoken by hand over `websockets`."""

    PROTOCOL = "graphql-transport-ws"

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.ids = itertools.count(1)

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(
        cls, url: str, token: str | None, init: dict[str, Any] | None = None
    ) -> AsyncIterator[TransportWs]:
        """Opens the connection and sends connection_init with the token as the payload's
        Authorization (or `init` as the whole payload)."""
        if init is None:
            init = {"Authorization": f"Bearer {token}"} if token is not None else {}
        async with websockets.connect(
            url, subprotocols=[Subprotocol(cls.PROTOCOL)], open_timeout=30
        ) as ws:
            assert ws.subprotocol == cls.PROTOCOL
            client = cls(ws)
            await client.send({"type": "connection_init", "payload": init})
            assert await client.receive() == {"type": "connection_ack"}
            yield client

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    async def receive(self, within: float = 30.0) -> dict[str, Any]:
        """The next message; TimeoutError when none came (cancelling recv() loses nothing)."""
        message: dict[str, Any] = json.loads(await asyncio.wait_for(self.ws.recv(), within))
        return message

    async def subscribe(self, query: str, variables: dict[str, Any] | None = None) -> str:
        operation = str(next(self.ids))
        payload = {"query": query, "variables": variables or {}}
        await self.send({"type": "subscribe", "id": operation, "payload": payload})
        return operation

    async def next_listen(self, within: float = 30.0) -> dict[str, Any]:
        """The next listen event: a `next` message without errors."""
        message = await self.receive(within)
        assert message["type"] == "next", message
        assert "errors" not in message["payload"], message
        listen: dict[str, Any] = message["payload"]["data"]["listens"]
        return listen


async def wait_until_live(
    next_listen: Callable[[float], Awaitable[dict[str, Any]]],
    record_sentinel: Callable[[], Awaitable[str]],
) -> set[str]:
    """A subscription has no acknowledgement: record sentinel listens until the subscriber
    receives one, so the subscription is live from then on. Returns every sentinel's ID:
    ones recorded just before may still arrive, and the caller skips them."""
    sentinels: set[str] = set()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        sentinels.add(await record_sentinel())
        try:
            listen = await next_listen(0.5)
        except TimeoutError:
            continue
        assert listen["id"] in sentinels, listen
        return sentinels
    raise AssertionError("the subscription never received a listen recorded after it")


def metric(text: str, name: str, **labels: str) -> float | None:
    """The sum of the samples called `name` whose labels include `labels`; None if none."""
    values = [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    ]
    return sum(values) if values else None


@dataclass
class ListenMaker:
    """Valid listens of one tenant's demo catalogue, recorded over HTTP."""

    api: Api
    token: str
    demo: Demo
    serial: Iterator[int] = field(default_factory=itertools.count)

    def draft(self, track: int = 0, listener: int = 0) -> dict[str, Any]:
        # Demo tracks last at least 60 s: every msPlayed here is valid, and each is distinct.
        return {
            "trackId": self.demo.tracks[track].id,
            "listenerId": self.demo.listeners[listener].id,
            "msPlayed": 1_000 + next(self.serial),
        }

    async def record(self, *drafts: dict[str, Any]) -> list[dict[str, Any]]:
        return await record_listens(self.api, self.token, list(drafts))

    async def sentinel(self, track: int = 0) -> str:
        """Records one listen (see wait_until_live) and returns its ID."""
        (stored,) = await self.record(self.draft(track, listener=0))
        listen_id: str = stored["id"]
        return listen_id

    def title(self, track_id: str) -> str:
        return next(t.title for t in self.demo.tracks if t.id == track_id)


@contextlib.contextmanager
def server_pair(env: dict[str, str], log_dir: Path) -> Iterator[tuple[ApiServer, ApiServer]]:
    """Two `tunelytics serve` processes with the same environment (one database, say)."""
    servers: list[ApiServer] = []
    try:
        for name in ("first", "second"):
            servers.append(ApiServer(env, log_dir / f"{name}.log").start())
        yield servers[0], servers[1]
    finally:
        for server in servers:
            server.stop()
