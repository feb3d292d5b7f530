"""Signed webhook deliveries of alert events, off the ingestion path.

Each delivery is a POST of JSON with two headers: `X-Tunelytics-Timestamp` (epoch
seconds) and `X-Tunelytics-Signature: sha256=<hex>`, the HMAC-SHA256 with the webhook's
secret of `"<timestamp>.<body>"`. A receiver recomputes it and refuses old timestamps, so
a captured request cannot be replayed later (the Stripe/Slack scheme). Deliveries wait in
a bounded queue (when it is full the newest is dropped and counted: ingestion never
waits on a receiver) and are retried with exponential backoff and full jitter.

>>> sign("s3cret", 1700000000, b'{"a":1}')
'sha256=1698a50bc74d1ff1db85c4e0a5297c2ad9fdba245d5737cdb789e4cc6e098940'
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

log = logging.getLogger(__name__)
SIGNATURE_HEADER = "X-Tunelytics-Signature"
TIMESTAMP_HEADER = "X-Tunelytics-Timestamp"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: int, body: bytes, signature: str, now: float,
           tolerance_s: float = 300.0) -> bool:  # fmt: skip
    """What a receiver does: the signature matches and the timestamp is recent."""
    fresh = abs(now - timestamp) <= tolerance_s
    return fresh and hmac.compare_digest(sign(secret, timestamp, body), signature)


@dataclass(frozen=True, slots=True)
class Delivery:
    url: str
    secret: str
    payload: dict[str, Any]


@dataclass
class WebhookSender:
    """Workers draining a bounded queue of deliveries."""

    max_queue: int = 10_000
    attempts: int = 6
    base_delay_s: float = 0.2
    max_delay_s: float = 30.0
    timeout_s: float = 5.0
    workers: int = 4
    clock: Callable[[], float] = time.time
    queue: asyncio.Queue[Delivery] = field(init=False)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    dropped: int = 0
    delivered: int = 0
    failed: int = 0
    client: httpx.AsyncClient | None = None

    def __post_init__(self) -> None:
        self.queue = asyncio.Queue(self.max_queue)

    def enqueue(self, delivery: Delivery) -> bool:
        try:
            self.queue.put_nowait(delivery)
        except asyncio.QueueFull:
            self.dropped += 1
            log.warning("webhook queue full; dropping a delivery", extra={"url": delivery.url})
            return False
        return True

    async def start(self) -> None:
        self.client = httpx.AsyncClient(timeout=self.timeout_s)
        self.tasks = [
            asyncio.create_task(self._work(), name=f"webhook-{i}") for i in range(self.workers)
        ]

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.tasks.clear()
        if self.client is not None:
            await self.client.aclose()

    async def _work(self) -> None:
        while True:
            delivery = await self.queue.get()
            try:
                await self.deliver(delivery)
            finally:
                self.queue.task_done()

    def backoff(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2^attempt)]."""
        return random.uniform(0, min(self.max_delay_s, self.base_delay_s * 2**attempt))

    async def deliver(self, delivery: Delivery) -> bool:
        assert self.client is not None
        body = json.dumps(delivery.payload, separators=(",", ":"), default=str).encode()
        for attempt in range(self.attempts):
            timestamp = int(self.clock())
            headers = {
                "content-type": "application/json",
                TIMESTAMP_HEADER: str(timestamp),
                SIGNATURE_HEADER: sign(delivery.secret, timestamp, body),
                "user-agent": "tunelytics-webhooks/1",
            }
            try:
                response = await self.client.post(delivery.url, content=body, headers=headers)
                if response.status_code < 300:
                    self.delivered += 1
                    return True
                retriable = response.status_code >= 500 or response.status_code in (408, 429)
                if not retriable:
                    break
            except httpx.HTTPError:
                pass
            if attempt + 1 < self.attempts:
                await asyncio.sleep(self.backoff(attempt))
        self.failed += 1
        log.warning("webhook delivery failed", extra={"url": delivery.url})
        return False
