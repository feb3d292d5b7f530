"""Webhooks against a real HTTP receiver on loopback: signed bodies, retries with backoff
after failures, no retry on a refusal, a bounded queue; and end to end, an alert raised by
ingestion on the real server reaches the tenant's receiver, and only that tenant's."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.conftest import SeededTenant
from tests.helpers import Api, codes
from tests.test_alerts_api import CREATE_RULE, ingest, latency, threshold_rule
from tunelytics.domain.auth import Role
from tunelytics.services.webhooks import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Delivery,
    WebhookSender,
    sign,
    verify,
)

CREATE_WEBHOOK = """mutation($url: String!) { createWebhook(url: $url, minSeverity: WARNING) {
  webhook { id url minSeverity } secret } }"""
DELETE_WEBHOOK = "mutation($id: ID!) { deleteWebhook(id: $id) }"


@dataclass
class Received:
    body: bytes
    headers: dict[str, str]


@dataclass
class Receiver:
    """An HTTP server on loopback answering `statuses` in turn (then 200)."""

    statuses: list[int] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.body) for r in self.received]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            state.received.append(Received(body, {k.lower(): v for k, v in self.headers.items()}))
            status = state.statuses.pop(0) if state.statuses else 200
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    state.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=state.server.serve_forever, daemon=True)
    thread.start()
    yield state
    state.server.shutdown()
    state.server.server_close()


def signed_correctly(secret: str, item: Received) -> bool:
    stamp = int(item.headers[TIMESTAMP_HEADER.lower()])
    return verify(secret, stamp, item.body, item.headers[SIGNATURE_HEADER.lower()], time.time())


async def test_a_receiver_that_fails_twice_gets_the_delivery_on_the_third_try(
    receiver: Receiver,
) -> None:
    receiver.statuses = [500, 503]
    sender = WebhookSender(base_delay_s=0.01)
    await sender.start()
    try:
        delivered = await sender.deliver(Delivery(receiver.url, "k1", {"kind": "fired", "n": 1}))
    finally:
        await sender.stop()
    assert delivered and sender.delivered == 1
    assert len(receiver.received) == 3
    assert {r.body for r in receiver.received} == {b'{"kind":"fired","n":1}'}
    assert all(signed_correctly("k1", r) for r in receiver.received)
    assert not signed_correctly("another secret", receiver.received[-1])


async def test_a_refusal_is_not_retried_and_a_dead_receiver_is_given_up_on(
    receiver: Receiver,
) -> None:
    sender = WebhookSender(base_delay_s=0.001, attempts=4)
    await sender.start()
    try:
        receiver.statuses = [400]
        assert not await sender.deliver(Delivery(receiver.url, "k", {"n": 1}))
        assert len(receiver.received) == 1
        receiver.statuses = [500] * 4
        assert not await sender.deliver(Delivery(receiver.url, "k", {"n": 2}))
        assert len(receiver.received) == 1 + 4
        # Nothing listens here at all: connection errors are retried too, then given up.
        assert not await sender.deliver(Delivery("http://127.0.0.1:9/", "k", {"n": 3}))
    finally:
        await sender.stop()
    assert sender.failed == 3


def test_signatures_cover_the_timestamp_and_old_ones_are_refused() -> None:
    body = b'{"a":1}'
    signature = sign("k", 1_000, body)
    assert verify("k", 1_000, body, signature, now=1_010)
    assert not verify("k", 1_001, body, signature, now=1_010)  # another timestamp
    assert not verify("k", 1_000, b'{"a":2}', signature, now=1_010)
    assert not verify("k", 1_000, body, signature, now=1_000 + 301)  # a replay, later


def test_backoff_grows_exponentially_with_full_jitter_up_to_a_cap() -> None:
    sender = WebhookSender(base_delay_s=1.0, max_delay_s=8.0)
    for attempt, ceiling in ((0, 1.0), (1, 2.0), (2, 4.0), (3, 8.0), (6, 8.0)):
        delays = [sender.backoff(attempt) for _ in range(200)]
        assert min(delays) >= 0 and max(delays) <= ceiling
        assert max(delays) > ceiling / 2  # spread over the whole range, not fixed


async def test_the_queue_is_bounded_and_drops_instead_of_waiting() -> None:
    sender = WebhookSender(max_queue=2)
    accepted = [sender.enqueue(Delivery("http://127.0.0.1:9/", "k", {"n": i})) for i in range(3)]
    assert accepted == [True, True, False] and sender.dropped == 1


async def wait_for(predicate: Any, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        await asyncio.sleep(0.05)


async def test_an_ingested_anomaly_reaches_the_tenants_webhook_signed(
    api: Api, tenant: SeededTenant, other_tenant: SeededTenant, receiver: Receiver
) -> None:
    assert codes(
        await api.post(CREATE_WEBHOOK, {"url": receiver.url}, tenant.token(Role.ANALYST))
    ) == ["FORBIDDEN"]
    bad = await api.post(CREATE_WEBHOOK, {"url": "file:///etc/passwd"}, tenant.admin)
    assert codes(bad) == ["BAD_USER_INPUT"]
    created = (await api.data(CREATE_WEBHOOK, {"url": receiver.url}, tenant.admin))["createWebhook"]
    secret = created["secret"]
    # The other tenant has the same rule but no webhook: its alerts never reach this one.
    for owner in (tenant, other_tenant):
        await api.data(CREATE_RULE, {"rule": threshold_rule("hooked")}, owner.admin)
    await ingest(api, other_tenant.admin, latency("hooked", 900.0))
    await ingest(api, tenant.admin, latency("hooked", 700.0))
    await wait_for(lambda: len(receiver.received) >= 1)
    (body,) = receiver.bodies()
    assert body["tenant_id"] == tenant.id and body["kind"] == "fired"
    assert body["alert"]["last_value"] == 700.0
    assert signed_correctly(secret, receiver.received[0])
    stamp = datetime.fromtimestamp(int(receiver.received[0].headers["x-tunelytics-timestamp"]), UTC)
    assert abs(stamp - datetime.now(UTC)) < timedelta(minutes=5)
    hook_id = created["webhook"]["id"]
    assert codes(await api.post(DELETE_WEBHOOK, {"id": hook_id}, other_tenant.admin)) == [
        "NOT_FOUND"
    ]
    assert (await api.data(DELETE_WEBHOOK, {"id": hook_id}, tenant.admin))["deleteWebhook"]
