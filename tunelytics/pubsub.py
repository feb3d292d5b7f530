"""Live events for subscriptions: one process by default, many through Redis pub/sub.

Each process keeps one local fan-out hub. Without Redis, publish goes straight into it.
With Redis, publish goes to Redis, and each process holds a single Redis subscription per
channel in use (reference-counted) that feeds its hub, so 1,000 WebSocket subscribers on
one replica cost one Redis subscription, not 1,000.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any, Protocol

import redis.asyncio as aioredis

from tunelytics import metrics

log = logging.getLogger(__name__)
Message = dict[str, Any]
# A subscriber that falls this far behind loses the oldest events rather than memory.
QUEUE_SIZE = 1_000


def listens_channel(tenant_id: str) -> str:
    return f"tenant:{tenant_id}:listens"


class Broadcaster(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def publish(self, channel: str, message: Message) -> None: ...
    async def publish_many(self, channel: str, messages: list[Message]) -> None: ...
    def subscribe(
        self, channel: str
    ) -> contextlib.AbstractAsyncContextManager[asyncio.Queue[Message]]: ...


class _Hub:
    """Fan-out of messages to the local subscribers of each channel."""

    def __init__(self) -> None:
        self.queues: dict[str, set[asyncio.Queue[Message]]] = defaultdict(set)

    def add(self, channel: str) -> asyncio.Queue[Message]:
        queue: asyncio.Queue[Message] = asyncio.Queue(QUEUE_SIZE)
        self.queues[channel].add(queue)
        return queue

    def remove(self, channel: str, queue: asyncio.Queue[Message]) -> bool:
        """Returns True when the channel has no local subscriber left."""
        queues = self.queues.get(channel)
        if queues is None:
            return True
        queues.discard(queue)
        if not queues:
            del self.queues[channel]
            return True
        return False

    def deliver(self, channel: str, message: Message) -> None:
        for queue in self.queues.get(channel, ()):
            if queue.full():
                queue.get_nowait()
                metrics.EVENTS_DROPPED.inc()
            queue.put_nowait(message)


class LocalBroadcaster:
    """In-process broadcasting: enough for one server process."""

    def __init__(self) -> None:
        self.hub = _Hub()

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def publish(self, channel: str, message: Message) -> None:
        self.hub.deliver(channel, message)

    async def publish_many(self, channel: str, messages: list[Message]) -> None:
        for message in messages:
            self.hub.deliver(channel, message)

    @contextlib.asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[asyncio.Queue[Message]]:
        queue = self.hub.add(channel)
        try:
            yield queue
        finally:
            self.hub.remove(channel, queue)


class RedisBroadcaster:
    """Redis pub/sub between processes, the local hub within one."""

    _CONTROL = "tunelytics:control"

    def __init__(self, url: str) -> None:
        self.redis = aioredis.from_url(url)
        self.pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        self.hub = _Hub()
        self.reader: asyncio.Task[None] | None = None
        self.lock = asyncio.Lock()

    async def start(self) -> None:
        # Subscribing to a control channel opens the connection before any subscriber.
        await self.pubsub.subscribe(self._CONTROL)
        self.reader = asyncio.create_task(self._read(), name="redis-pubsub-reader")

    async def stop(self) -> None:
        if self.reader:
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.reader
        await self.pubsub.aclose()
        await self.redis.aclose()

    async def ping(self) -> None:
        await self.redis.ping()

    async def publish(self, channel: str, message: Message) -> None:
        await self.publish_many(channel, [message])

    async def publish_many(self, channel: str, messages: list[Message]) -> None:
        # One round trip for a whole batch, in order.
        async with self.redis.pipeline(transaction=False) as pipe:
            for message in messages:
                pipe.publish(channel, json.dumps(message, separators=(",", ":")))
            await pipe.execute()

    @contextlib.asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[asyncio.Queue[Message]]:
        async with self.lock:
            first = channel not in self.hub.queues
            queue = self.hub.add(channel)
            if first:
                await self.pubsub.subscribe(channel)
        try:
            yield queue
        finally:
            async with self.lock:
                if self.hub.remove(channel, queue):
                    await self.pubsub.unsubscribe(channel)

    async def _read(self) -> None:
        while True:
            try:
                message = await self.pubsub.get_message(timeout=1.0)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("redis pub/sub read failed; retrying")
                await asyncio.sleep(0.5)
                continue
            if message is None or message.get("type") != "message":
                continue
            channel = message["channel"].decode()
            try:
                payload = json.loads(message["data"])
            except ValueError:
                log.warning("dropping a malformed pub/sub message", extra={"channel": channel})
                continue
            self.hub.deliver(channel, payload)


def create_broadcaster(redis_url: str | None) -> Broadcaster:
    return RedisBroadcaster(redis_url) if redis_url else LocalBroadcaster()
