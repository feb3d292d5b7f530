"""Live listens over a real WebSocket to a real server: graphql-transport-ws spoken by hand,
the legacy graphql-ws protocol through the `gql` client, tenancy, auth and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import jwt
import pytest
from gql import Client, GraphQLRequest
from gql.transport.exceptions import TransportQueryError
from gql.transport.websockets import WebsocketsTransport

from tests.conftest import SeededTenant
from tests.helpers import (
    SUBSCRIBE_LISTENS,
    Api,
    ApiServer,
    ListenMaker,
    TransportWs,
    metric,
    token,
    wait_until_live,
)
from tunelytics.domain.auth import Role

TRANSPORT_WS = "graphql-transport-ws"
LEGACY_WS = "graphql-ws"
NextListen = Callable[[float], Awaitable[dict[str, Any]]]


def bearer(value: str) -> dict[str, Any]:
    return {"Authorization": f"Bearer {value}"}


@dataclass
class LegacyFeed:
    """A subscription's events, pumped from the `gql` client into a queue by a task that
    ends with TransportQueryError when the server ends the subscription with errors."""

    task: asyncio.Task[None]
    listens: asyncio.Queue[dict[str, Any]]

    async def next_listen(self, within: float = 30.0) -> dict[str, Any]:
        getter = asyncio.ensure_future(self.listens.get())
        done, _ = await asyncio.wait(
            {getter, self.task}, timeout=within, return_when=asyncio.FIRST_COMPLETED
        )
        if getter in done:
            return getter.result()
        getter.cancel()  # an asyncio.Queue loses no item to a cancelled get()
        if self.task in done:
            self.task.result()  # raises what ended the subscription
            raise AssertionError("the subscription ended without an error")
        raise TimeoutError


@contextlib.asynccontextmanager
async def legacy_subscription(
    server: ApiServer, init: dict[str, Any], variables: dict[str, Any] | None = None
) -> AsyncIterator[LegacyFeed]:
    """The listens subscription over the legacy graphql-ws protocol, by the `gql` client."""
    transport = WebsocketsTransport(
        url=server.ws_url,
        init_payload=init,
        subprotocols=[WebsocketsTransport.APOLLO_SUBPROTOCOL],
        connect_timeout=30,
        ack_timeout=30,
    )
    async with Client(transport=transport) as session:
        assert transport.subprotocol == LEGACY_WS  # the server picked the legacy protocol
        listens: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        request = GraphQLRequest(SUBSCRIBE_LISTENS, variable_values=variables or {})

        async def pump() -> None:
            async for data in session.subscribe(request):
                await listens.put(data["listens"])

        task = asyncio.create_task(pump())
        try:
            yield LegacyFeed(task, listens)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TransportQueryError):
                await task


@contextlib.asynccontextmanager
async def listens_feed(
    protocol: str, server: ApiServer, token_: str, track_id: str | None = None
) -> AsyncIterator[NextListen]:
    """A listens subscription over either protocol; yields its next-listen function."""
    variables = {"trackId": track_id}
    if protocol == TRANSPORT_WS:
        async with TransportWs.connect(server.ws_url, token_) as ws:
            await ws.subscribe(SUBSCRIBE_LISTENS, variables)
            yield ws.next_listen
    else:
        async with legacy_subscription(server, bearer(token_), variables) as feed:
            yield feed.next_listen


async def next_new(next_listen: NextListen, skip: set[str]) -> dict[str, Any]:
    """The next listen that is not one of `skip` (sentinels still in flight)."""
    while True:
        listen = await next_listen(30.0)
        if listen["id"] not in skip:
            return listen


def expected_event(stored: dict[str, Any], maker: ListenMaker) -> dict[str, Any]:
    return {
        "id": stored["id"],
        "trackId": stored["trackId"],
        "listenerId": stored["listenerId"],
        "msPlayed": stored["msPlayed"],
        "track": {"id": stored["trackId"], "title": maker.title(stored["trackId"])},
    }


async def test_transport_ws_delivers_each_stored_listen_with_its_track(
    server: ApiServer, api: Api, tenant: SeededTenant
) -> None:
    maker = ListenMaker(api, tenant.admin, tenant.demo)
    async with TransportWs.connect(server.ws_url, tenant.viewer) as ws:
        first = await ws.subscribe(SUBSCRIBE_LISTENS)
        sentinels = await wait_until_live(ws.next_listen, maker.sentinel)

        stored = await maker.record(
            maker.draft(track=1, listener=1),
            maker.draft(track=2, listener=2),
            maker.draft(track=3, listener=3),
        )
        received = [await next_new(ws.next_listen, sentinels) for _ in stored]
        assert received == [expected_event(listen, maker) for listen in stored]
        # The nested track really was resolved against the catalogue, not echoed.
        assert {r["track"]["title"] for r in received} == {
            tenant.demo.tracks[i].title for i in (1, 2, 3)
        }

        # The client's `complete` ends that subscription; once a ping/pong round trip shows
        # the server has handled it, only the connection's next subscription gets events.
        await ws.send({"type": "complete", "id": first})
        await ws.send({"type": "ping"})
        while (message := await ws.receive()) != {"type": "pong"}:
            assert message["id"] == first and message["type"] == "next", message
            assert message["payload"]["data"]["listens"]["id"] in sentinels, message
        second = await ws.subscribe(SUBSCRIBE_LISTENS)

        async def next_of_second(within: float) -> dict[str, Any]:
            message = await ws.receive(within)
            assert message["id"] == second and message["type"] == "next", message
            listen: dict[str, Any] = message["payload"]["data"]["listens"]
            return listen

        sentinels |= await wait_until_live(next_of_second, maker.sentinel)
        (again,) = await maker.record(maker.draft(track=4))
        assert await next_new(next_of_second, sentinels) == expected_event(again, maker)


async def test_track_filter_delivers_only_that_tracks_listens(
    server: ApiServer, api: Api, tenant: SeededTenant
) -> None:
    maker = ListenMaker(api, tenant.admin, tenant.demo)
    wanted = tenant.demo.tracks[5].id
    async with TransportWs.connect(server.ws_url, tenant.viewer) as ws:
        await ws.subscribe(SUBSCRIBE_LISTENS, {"trackId": wanted})
        sentinels = await wait_until_live(ws.next_listen, lambda: maker.sentinel(track=5))
        # Other tracks' listens come first in the same batch: a leak would arrive first.
        stored = await maker.record(
            maker.draft(track=6),
            maker.draft(track=5, listener=1),
            maker.draft(track=7),
            maker.draft(track=5, listener=2),
        )
        received = [await next_new(ws.next_listen, sentinels) for _ in range(2)]
    assert received == [expected_event(stored[1], maker), expected_event(stored[3], maker)]
    assert all(r["trackId"] == wanted for r in received)


async def test_legacy_graphql_ws_with_the_gql_client(
    server: ApiServer, api: Api, tenant: SeededTenant
) -> None:
    maker = ListenMaker(api, tenant.admin, tenant.demo)
    async with legacy_subscription(server, bearer(tenant.viewer)) as feed:
        sentinels = await wait_until_live(feed.next_listen, maker.sentinel)
        stored = await maker.record(maker.draft(track=8, listener=4), maker.draft(track=9))
        received = [await next_new(feed.next_listen, sentinels) for _ in stored]
    assert received == [expected_event(listen, maker) for listen in stored]


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_subscribers_see_only_their_own_tenants_listens(
    protocol: str,
    server: ApiServer,
    api: Api,
    tenant: SeededTenant,
    other_tenant: SeededTenant,
) -> None:
    # Both tenants have the same track and listener IDs (another seed, other content).
    mine = ListenMaker(api, tenant.admin, tenant.demo)
    theirs = ListenMaker(api, other_tenant.admin, other_tenant.demo)
    async with (
        listens_feed(protocol, server, tenant.viewer) as next_mine,
        listens_feed(protocol, server, other_tenant.viewer) as next_theirs,
    ):
        skip_mine = await wait_until_live(next_mine, mine.sentinel)
        skip_theirs = await wait_until_live(next_theirs, theirs.sentinel)

        recorded_theirs = await theirs.record(theirs.draft(track=10), theirs.draft(track=11))
        recorded_mine = await mine.record(mine.draft(track=10), mine.draft(track=11))

        # The other tenant's subscriber gets theirs: they were published, to them only.
        got_theirs = [await next_new(next_theirs, skip_theirs) for _ in range(2)]
        assert got_theirs == [expected_event(listen, theirs) for listen in recorded_theirs]
        # Mine were recorded after theirs: had theirs leaked, they would come first.
        got_mine = [await next_new(next_mine, skip_mine) for _ in range(2)]
        assert got_mine == [expected_event(listen, mine) for listen in recorded_mine]
        assert not {listen["id"] for listen in recorded_theirs} & {g["id"] for g in got_mine}


async def subscription_errors(protocol: str, server: ApiServer, init: dict[str, Any]) -> list[Any]:
    """Subscribes with this connection_init payload; returns the errors that end it."""
    if protocol == TRANSPORT_WS:
        async with TransportWs.connect(server.ws_url, None, init=init) as ws:
            operation = await ws.subscribe(SUBSCRIBE_LISTENS)
            message = await ws.receive()
            assert message["type"] == "next" and message["id"] == operation, message
            assert message["payload"]["data"] is None
            assert await ws.receive() == {"id": operation, "type": "complete"}
            errors: list[Any] = message["payload"]["errors"]
            return errors
    async with legacy_subscription(server, init) as feed:
        with pytest.raises(TransportQueryError) as raised:
            await asyncio.wait_for(feed.task, 30)
        assert raised.value.errors is not None
        return list(raised.value.errors)


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_subscribing_needs_a_valid_token_that_may_read(
    protocol: str, server: ApiServer, tenant: SeededTenant
) -> None:
    wrong_secret = jwt.encode(
        {"sub": "x", "tenant": tenant.id, "roles": ["admin"], "exp": int(time.time()) + 600},
        "some-other-secret-with-enough-entropy-0123",
        algorithm="HS256",
    )
    cases = [
        ({}, "UNAUTHENTICATED", "authentication required"),
        (bearer("garbage"), "UNAUTHENTICATED", "invalid token"),
        (bearer(wrong_secret), "UNAUTHENTICATED", "invalid token"),
        (bearer(token(tenant.id, ttl=timedelta(minutes=-5))), "UNAUTHENTICATED", "expired"),
        (bearer(tenant.token(Role.INGEST)), "FORBIDDEN", "may not read"),
    ]
    for init, code, words in cases:
        errors = await subscription_errors(protocol, server, init)
        assert [e["extensions"]["code"] for e in errors] == [code], (init, errors)
        assert words in errors[0]["message"], errors


async def test_a_subscription_ends_unauthenticated_when_its_token_expires(
    server: ApiServer, api: Api, tenant: SeededTenant
) -> None:
    maker = ListenMaker(api, tenant.admin, tenant.demo)
    short = token(tenant.id, Role.VIEWER, ttl=timedelta(seconds=3))
    expires = jwt.decode(short, options={"verify_signature": False})["exp"]
    async with TransportWs.connect(server.ws_url, short) as ws:
        operation = await ws.subscribe(SUBSCRIBE_LISTENS)
        # Live first: the subscription was accepted and served before the token expired.
        sentinels = await wait_until_live(ws.next_listen, maker.sentinel)
        while True:
            message = await ws.receive()
            assert message["id"] == operation, message
            errors = message["payload"].get("errors")
            if errors is None:
                assert message["payload"]["data"]["listens"]["id"] in sentinels, message
                continue
            break
        assert time.time() >= expires
        assert message["type"] == "next" and message["payload"]["data"] is None
        assert [e["extensions"]["code"] for e in errors] == ["UNAUTHENTICATED"]
        assert errors[0]["message"] == "token has expired; reconnect with a fresh one"
        assert await ws.receive() == {"id": operation, "type": "complete"}


async def active_listens_subscriptions(client: httpx.AsyncClient, server: ApiServer) -> float:
    response = await client.get(server.url + "/metrics")
    assert response.status_code == 200
    value = metric(response.text, "tunelytics_active_subscriptions", field="listens")
    return value or 0.0


async def poll_active(client: httpx.AsyncClient, server: ApiServer, wanted: float) -> None:
    deadline = time.monotonic() + 30
    while (value := await active_listens_subscriptions(client, server)) != wanted:
        assert time.monotonic() < deadline, f"active subscriptions stayed at {value}"
        await asyncio.sleep(0.1)


async def test_active_subscriptions_gauge_follows_open_subscriptions(
    server: ApiServer, api: Api, tenant: SeededTenant
) -> None:
    maker = ListenMaker(api, tenant.admin, tenant.demo)
    async with httpx.AsyncClient(timeout=30) as client:
        await poll_active(client, server, 0)  # earlier tests' connections have all closed
        async with TransportWs.connect(server.ws_url, tenant.viewer) as ws:
            await ws.subscribe(SUBSCRIBE_LISTENS)
            await wait_until_live(ws.next_listen, maker.sentinel)
            assert await active_listens_subscriptions(client, server) >= 1
        # The client went away without a `complete`: the server notices and lets go.
        await poll_active(client, server, 0)
