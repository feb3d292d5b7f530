"""Live fan-out beyond one process: two real servers on one database, with and without
Redis between them, and RedisBroadcaster itself against the real Redis."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from tests.conftest import SeededTenant
from tests.helpers import (
    SUBSCRIBE_LISTENS,
    Api,
    ApiServer,
    ListenMaker,
    TransportWs,
    server_pair,
    wait_until_live,
)
from tunelytics.pubsub import RedisBroadcaster, listens_channel

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def pair_env(mongo_url: str, database_name: str) -> dict[str, str]:
    """Both servers on the session's database (where `tenant` is seeded)."""
    return {"MONGODB_URL": mongo_url, "MONGODB_DATABASE": database_name}


async def readiness(server: ApiServer) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.get(server.url + "/readyz")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def next_new(ws: TransportWs, skip: set[str]) -> dict[str, Any]:
    while (listen := await ws.next_listen())["id"] in skip:
        pass
    return listen


async def test_a_listen_recorded_on_one_server_reaches_a_subscriber_of_another(
    pair_env: dict[str, str], tmp_path: Path, tenant: SeededTenant
) -> None:
    with server_pair({**pair_env, "REDIS_URL": REDIS_URL}, tmp_path) as (first, second):
        for server in (first, second):
            assert await readiness(server) == {
                "status": "ready",
                "checks": {"mongodb": "ok", "redis": "ok"},
            }
        writer = Api(first.graphql_url)
        try:
            maker = ListenMaker(writer, tenant.admin, tenant.demo)
            async with TransportWs.connect(second.ws_url, tenant.viewer) as ws:
                await ws.subscribe(SUBSCRIBE_LISTENS)
                # Every sentinel is recorded through the first server: going live already
                # means crossing from one process to the other.
                sentinels = await wait_until_live(ws.next_listen, maker.sentinel)
                stored = await maker.record(maker.draft(track=3), maker.draft(track=4))
                received = [await next_new(ws, sentinels) for _ in stored]
        finally:
            await writer.client.aclose()
    assert [r["id"] for r in received] == [s["id"] for s in stored]
    assert [r["track"]["title"] for r in received] == [
        tenant.demo.tracks[3].title,
        tenant.demo.tracks[4].title,
    ]


async def test_without_redis_a_listen_stays_in_the_process_that_stored_it(
    pair_env: dict[str, str], tmp_path: Path, tenant: SeededTenant
) -> None:
    with server_pair({**pair_env, "REDIS_URL": ""}, tmp_path) as (first, second):
        for server in (first, second):
            assert await readiness(server) == {"status": "ready", "checks": {"mongodb": "ok"}}
        via_first, via_second = Api(first.graphql_url), Api(second.graphql_url)
        try:
            on_first = ListenMaker(via_first, tenant.admin, tenant.demo)
            on_second = ListenMaker(via_second, tenant.admin, tenant.demo)
            async with (
                TransportWs.connect(first.ws_url, tenant.viewer) as near,
                TransportWs.connect(second.ws_url, tenant.viewer) as far,
            ):
                await near.subscribe(SUBSCRIBE_LISTENS)
                await far.subscribe(SUBSCRIBE_LISTENS)
                # Each subscriber goes live with sentinels recorded on its own server.
                far_own = await wait_until_live(far.next_listen, on_second.sentinel)
                near_own = await wait_until_live(near.next_listen, on_first.sentinel)

                (stored,) = await on_first.record(on_first.draft(track=5))
                # Positive control: the first server's own subscriber does get it...
                assert (await next_new(near, near_own))["id"] == stored["id"]
                # ...while the other process's subscriber gets nothing it did not store.
                deadline = time.monotonic() + 2.0
                while (left := deadline - time.monotonic()) > 0:
                    try:
                        listen = await far.next_listen(left)
                    except TimeoutError:
                        break
                    assert listen["id"] in far_own, listen
        finally:
            await via_first.client.aclose()
            await via_second.client.aclose()


async def numsub(client: aioredis.Redis, channel: str) -> int:
    ((_, count),) = await client.pubsub_numsub(channel)
    return int(count)


async def until_numsub(client: aioredis.Redis, channel: str, wanted: int) -> None:
    deadline = time.monotonic() + 30
    while (count := await numsub(client, channel)) != wanted:
        assert time.monotonic() < deadline, f"{channel} kept {count} Redis subscribers"
        await asyncio.sleep(0.05)


async def test_redis_broadcaster_between_two_instances_with_reference_counting() -> None:
    channel = listens_channel(f"t-{uuid.uuid4().hex[:10]}")
    elsewhere = listens_channel(f"t-{uuid.uuid4().hex[:10]}")
    reader, writer = RedisBroadcaster(REDIS_URL), RedisBroadcaster(REDIS_URL)
    probe = aioredis.from_url(REDIS_URL)
    await reader.start()
    await writer.start()
    try:
        assert await numsub(probe, channel) == 0
        async with reader.subscribe(channel) as one:
            async with reader.subscribe(channel) as two:
                # Two local subscribers, one Redis subscription.
                await until_numsub(probe, channel, 1)
                await writer.publish(elsewhere, {"n": 0})
                await writer.publish(channel, {"n": 1})
                await writer.publish_many(channel, [{"n": 2}, {"n": 3}])
                for queue in (one, two):
                    got = [await asyncio.wait_for(queue.get(), 30) for _ in range(3)]
                    assert got == [{"n": 1}, {"n": 2}, {"n": 3}]
            # One local subscriber left: the Redis subscription stays, and still delivers.
            assert await numsub(probe, channel) == 1
            await writer.publish(channel, {"n": 4})
            assert await asyncio.wait_for(one.get(), 30) == {"n": 4}
        # The last one left: the process gives up the channel in Redis.
        await until_numsub(probe, channel, 0)

        # And takes it again for a new subscriber.
        async with reader.subscribe(channel) as again:
            await until_numsub(probe, channel, 1)
            await writer.publish(channel, {"n": 5})
            assert await asyncio.wait_for(again.get(), 30) == {"n": 5}
            assert one.empty() and two.empty()  # queues of subscribers that left get nothing
        await until_numsub(probe, channel, 0)
    finally:
        await reader.stop()
        await writer.stop()
        await probe.aclose()
