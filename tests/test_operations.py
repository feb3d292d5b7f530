"""Guard rails and operations endpoints, against real `tunelytics serve` processes."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import SeededTenant
from tests.helpers import Api, ApiServer, codes, metric, server_pair, token
from tunelytics.config import Limits
from tunelytics.domain.auth import Role
from tunelytics.storage.embedded import free_port

VIEWER = "{ viewer { subject tenantId } }"
MAX_BODY = Limits.max_body_bytes
LATENCY_BUCKETS = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}


def some_token(subject: str = "tester") -> str:
    """A valid token of a tenant nobody registered: enough for `viewer`."""
    return token(f"t-ops-{uuid.uuid4().hex[:8]}", Role.VIEWER, subject=subject)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


async def answers_normally(api: Api) -> None:
    data = await api.data(VIEWER, token=token("t-still-up", Role.VIEWER, subject="still"))
    assert data == {"viewer": {"subject": "still", "tenantId": "t-still-up"}}


def json_lines(server: ApiServer) -> list[dict[str, Any]]:
    return [json.loads(line) for line in server.log_lines()]


# --- health, readiness, logs ---------------------------------------------------------------


async def test_healthz_and_readyz(server: ApiServer, http: httpx.AsyncClient) -> None:
    response = await http.get(server.url + "/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    response = await http.get(server.url + "/readyz")
    assert response.status_code == 200
    # The session server runs without Redis: MongoDB is the one dependency checked.
    assert response.json() == {"status": "ready", "checks": {"mongodb": "ok"}}


async def test_a_dead_mongodb_means_not_ready_and_masked_internal_errors(
    tmp_path: Path, http: httpx.AsyncClient
) -> None:
    dead_port = free_port()  # bound for a moment, then released: nothing listens there
    env = {
        "MONGODB_URL": f"mongodb://127.0.0.1:{dead_port}/?directConnection=true",
        "MONGODB_TIMEOUT_MS": "500",
        "REDIS_URL": "",
    }
    dead = ApiServer(env, tmp_path / "dead.log").start(expect_ready=False)
    api = Api(dead.graphql_url)
    try:
        assert (await http.get(dead.url + "/healthz")).status_code == 200  # alive...
        response = await http.get(dead.url + "/readyz")
        assert response.status_code == 503  # ...but not ready
        body = response.json()
        assert body["status"] == "not ready"
        assert body["checks"]["mongodb"].startswith("unavailable")

        response = await api.client.post(
            dead.graphql_url,
            json={"query": "{ tenant { id name } }"},
            headers={"Authorization": f"Bearer {token('t-dead', Role.VIEWER)}"},
        )
        assert response.status_code == 200
        answer = response.json()
        assert answer["data"] is None
        assert [(e["message"], e["extensions"]) for e in answer["errors"]] == [
            ("Internal server error", {"code": "INTERNAL"})
        ]
        for secret in ("ServerSelection", "Timeout", "pymongo", "Traceback", str(dead_port)):
            assert secret not in response.text
        # Fields that need no database still work: the process is up.
        await answers_normally(api)
    finally:
        await api.client.aclose()
        dead.stop()
    logged = [
        line
        for line in json_lines(dead)
        if line.get("logger") == "tunelytics.errors"
        and line["message"] == "unhandled error in a resolver"
    ]
    assert len(logged) == 1, logged
    assert logged[0]["level"] == "ERROR"
    assert "pymongo.errors.ServerSelectionTimeoutError" in logged[0]["exc_info"]
    assert f"127.0.0.1:{dead_port}" in logged[0]["exc_info"]


async def test_every_server_log_line_is_json(server: ApiServer, api: Api) -> None:
    await api.post('{ track(id: "nope") { id } }', token=some_token())
    await api.post("{ nope }")
    lines = json_lines(server)  # raises on the first line that is not JSON
    assert lines
    for line in lines:
        assert {"time", "level", "logger", "message"} <= line.keys(), line
    # The start-up banner is logged like everything else, the development token included.
    banner = [line for line in lines if line["message"].startswith("GraphiQL: ")]
    assert [line["message"] for line in banner] == [f"GraphiQL: {server.graphql_url}"]
    (dev_token,) = [line for line in lines if "headers" in line]
    assert dev_token["headers"]["Authorization"].startswith("Bearer ey")


# --- metrics -------------------------------------------------------------------------------


async def test_metrics(server: ApiServer, api: Api, http: httpx.AsyncClient) -> None:
    async def scrape() -> str:
        response = await http.get(server.url + "/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        return response.text

    ok = {"method": "POST", "path": "/graphql", "status": "200"}
    before = await scrape()
    await api.data(VIEWER, token=some_token())
    after = await scrape()
    requests = "tunelytics_http_requests_total"
    assert metric(after, requests, **ok) == (metric(before, requests, **ok) or 0) + 1

    buckets = {
        float(labels["le"]): value
        for labels, value in bucket_samples(after, method="POST", path="/graphql")
    }
    assert set(buckets) == {*LATENCY_BUCKETS, float("inf")}
    assert list(buckets.values()) == sorted(buckets.values())  # cumulative
    count = metric(after, "tunelytics_http_request_duration_seconds_count", path="/graphql")
    assert count is not None and count >= 1
    assert buckets[float("inf")] == count
    assert "tunelytics_http_request_duration_seconds_bucket{" in after  # the raw text too

    errors = "tunelytics_graphql_errors_total"
    before = await scrape()
    body = await api.post('{ track(id: "nope") { id } }', token=some_token())
    assert codes(body) == ["NOT_FOUND"]
    after = await scrape()
    assert (
        metric(after, errors, code="NOT_FOUND")
        == (metric(before, errors, code="NOT_FOUND") or 0) + 1
    )


def bucket_samples(text: str, **labels: str) -> list[tuple[dict[str, str], float]]:
    return [
        (sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "tunelytics_http_request_duration_seconds_bucket"
        and all(sample.labels.get(k) == v for k, v in labels.items())
    ]


# --- request size ----------------------------------------------------------------------------


def padded_body(size: int) -> bytes:
    """A GraphQL request of exactly `size` bytes (an unused variable carries the padding)."""
    empty = json.dumps({"query": VIEWER, "variables": {"pad": ""}}).encode()
    body = json.dumps({"query": VIEWER, "variables": {"pad": "x" * (size - len(empty))}})
    assert len(body) == size
    return body.encode()


async def chunks(body: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


def assert_too_large(response: httpx.Response) -> None:
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "errors": [
            {
                "message": f"request body exceeds {MAX_BODY} bytes",
                "extensions": {"code": "BAD_USER_INPUT"},
            }
        ]
    }


async def test_bodies_over_the_limit_are_refused_with_or_without_a_length(
    server: ApiServer, api: Api, http: httpx.AsyncClient
) -> None:
    headers = {"Authorization": f"Bearer {some_token()}", "Content-Type": "application/json"}
    fits, too_big = padded_body(MAX_BODY), padded_body(MAX_BODY + 1)

    # With Content-Length: refused from the header, before the body is read.
    response = await http.post(server.graphql_url, content=too_big, headers=headers)
    assert response.request.headers["content-length"] == str(MAX_BODY + 1)
    assert_too_large(response)
    response = await http.post(server.graphql_url, content=fits, headers=headers)
    assert response.status_code == 200 and "errors" not in response.json()

    # Chunked, with no Content-Length: refused while the body is counted.
    response = await http.post(server.graphql_url, content=chunks(too_big), headers=headers)
    assert "content-length" not in response.request.headers
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert_too_large(response)
    response = await http.post(server.graphql_url, content=chunks(fits), headers=headers)
    assert response.status_code == 200 and "errors" not in response.json()

    await answers_normally(api)


# --- hostile queries -------------------------------------------------------------------------


def nested_tracks(levels: int) -> str:
    return (
        "{ tracks(first: 1) { edges { node { "
        # Narrow pages: this probes depth; breadth has its own limit (test_breadth_...).
        + "artist { tracks(first: 2) { " * levels
        + "id"
        + " } }" * levels
        + " } } } }"
    )


def fragment_chain(levels: int) -> str:
    """Depth hidden behind a chain of fragments, each spreading the next."""
    parts = ["query { tracks(first: 1) { edges { node { ...T0 } } } }"]
    for i in range(levels):
        parts.append(f"fragment T{i} on Track {{ artist {{ ...A{i} }} }}")
        parts.append(f"fragment A{i} on Artist {{ tracks(first: 2) {{ ...T{i + 1} }} }}")
    parts.append(f"fragment T{levels} on Track {{ id }}")
    return "\n".join(parts)


HOSTILE_QUERIES = {
    "depth": (nested_tracks(5), "exceeds maximum operation depth of 12"),
    "tokens": ("{ viewer { " + "subject " * 2_100 + "} }", "2000"),
    "aliases": (
        "{ " + " ".join(f"a{i}: viewer {{ subject }}" for i in range(31)) + " }",
        "aliases",
    ),
    "fragment chain": (fragment_chain(5), "exceeds maximum operation depth of 12"),
    "fragment cycle": (
        "query { tracks(first: 1) { edges { node { ...T } } } }\n"
        "fragment T on Track { artist { tracks { ...T } } }",
        "Cannot spread fragment 'T' within itself",
    ),
    "5000 aliased fields": (
        "{ " + " ".join(f"f{i}: __typename" for i in range(5_000)) + " }",
        "2000",
    ),
}


@pytest.mark.parametrize("name", list(HOSTILE_QUERIES))
async def test_hostile_queries_are_refused_as_bad_input(name: str, api: Api) -> None:
    query, words = HOSTILE_QUERIES[name]
    body = await api.post(query, token=some_token())
    assert codes(body) == ["BAD_USER_INPUT"], body
    assert body.get("data") is None
    assert words in body["errors"][0]["message"], body["errors"]
    await answers_normally(api)


@pytest.mark.parametrize("query", [nested_tracks(4), fragment_chain(4)])
async def test_depth_at_the_limit_is_served(query: str, api: Api) -> None:
    """One level less than the refused depth cases: refused for depth, not for shape."""
    data = await api.data(query, token=some_token())
    assert data == {"tracks": {"edges": []}}  # the token's tenant has no tracks


UNREADABLE_BODIES = {
    "malformed JSON": (b'{"query": "{ viewer { subject } }"', "Unable to parse"),
    "not UTF-8": (b'{"query": "\xff\xfe"}', "Unable to parse"),
    "nested past the parser": (b"[" * 100_000 + b"]" * 100_000, "Unable to parse"),
    "a JSON string": (b'"{ viewer { subject } }"', "JSON object"),
    "JSON null": (b"null", "JSON object"),
    "a batch": (json.dumps([{"query": VIEWER}]).encode(), "Batching is not enabled"),
    "variables a list": (json.dumps({"query": VIEWER, "variables": [1]}).encode(), "variables"),
    "variables a string": (
        json.dumps({"query": VIEWER, "variables": "{}"}).encode(),
        "variables",
    ),
    "query a number": (json.dumps({"query": 5}).encode(), "query"),
}


@pytest.mark.parametrize("name", list(UNREADABLE_BODIES))
async def test_unreadable_requests_get_400_with_a_json_error(
    name: str, server: ApiServer, api: Api, http: httpx.AsyncClient
) -> None:
    content, words = UNREADABLE_BODIES[name]
    response = await http.post(
        server.graphql_url,
        content=content,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {some_token()}"},
    )
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert codes(body) == ["BAD_USER_INPUT"]
    assert words in body["errors"][0]["message"]
    await answers_normally(api)


async def test_variables_of_the_wrong_type_are_bad_input(api: Api) -> None:
    body = await api.post(
        "query($first: Int!) { tracks(first: $first) { totalCount } }",
        {"first": {"not": "a number"}},
        token=some_token(),
    )
    assert codes(body) == ["BAD_USER_INPUT"]
    await answers_normally(api)


# --- rate limits -----------------------------------------------------------------------------


def assert_rate_limited(body: dict[str, Any]) -> None:
    assert codes(body) == ["RATE_LIMITED"], body
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["retryAfterSeconds"] == 60


async def test_rate_limit_per_caller(mongo_url: str, database_name: str, tmp_path: Path) -> None:
    env = {
        "MONGODB_URL": mongo_url,
        "MONGODB_DATABASE": database_name,
        "REDIS_URL": "",
        "RATE_LIMIT_PER_MINUTE": "5",
    }
    limited = ApiServer(env, tmp_path / "limited.log").start()
    api = Api(limited.graphql_url)
    try:
        tenant = f"t-rate-{uuid.uuid4().hex[:8]}"
        caller = token(tenant, Role.VIEWER)
        for _ in range(5):
            assert (await api.data(VIEWER, token=caller))["viewer"]["subject"] == "tester"
        assert_rate_limited(await api.post(VIEWER, token=caller))
        # Another caller of the same tenant has a budget of its own.
        other = token(tenant, Role.VIEWER, subject="other")
        assert (await api.data(VIEWER, token=other))["viewer"]["subject"] == "other"
        assert_rate_limited(await api.post(VIEWER, token=caller))
    finally:
        await api.client.aclose()
        limited.stop()


async def test_rate_limit_is_shared_by_servers_on_one_redis(
    mongo_url: str, database_name: str, tmp_path: Path
) -> None:
    env = {
        "MONGODB_URL": mongo_url,
        "MONGODB_DATABASE": database_name,
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "RATE_LIMIT_PER_MINUTE": "5",
    }
    with server_pair(env, tmp_path) as (first, second):
        apis = [Api(first.graphql_url), Api(second.graphql_url)]
        try:
            tenant = f"t-rate-{uuid.uuid4().hex[:8]}"
            caller = token(tenant, Role.VIEWER)
            for i in range(5):  # first, second, first, second, first
                assert "errors" not in await apis[i % 2].post(VIEWER, token=caller)
            # The sixth, on the server that has seen only two of them, is over the limit.
            assert_rate_limited(await apis[1].post(VIEWER, token=caller))
            assert_rate_limited(await apis[0].post(VIEWER, token=caller))
            other = token(tenant, Role.VIEWER, subject="other")
            assert "errors" not in await apis[1].post(VIEWER, token=other)
        finally:
            for api in apis:
                await api.client.aclose()


# --- GraphiQL --------------------------------------------------------------------------------


async def test_graphiql_page(server: ApiServer, http: httpx.AsyncClient) -> None:
    response = await http.get(server.graphql_url, headers={"Accept": "text/html"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "<title>Strawberry GraphiQL</title>" in response.text
    assert "graphiql" in response.text.lower() and "<script" in response.text


BREADTH = """query($n: Int!) { tracks(first: $n) { nodes { artist { tracks(first: $n) {
  artist { tracks(first: $n) { id } } } } } } }"""


async def test_breadth_is_bounded_before_anything_is_read(api: Api, tenant: SeededTenant) -> None:
    """Shallow but wide: 100 x 100 x 100 tracks would be a million objects."""
    body = await api.post(BREADTH, {"n": 100}, token=tenant.viewer)
    assert body["data"] is None
    (error,) = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["estimatedObjects"] > error["extensions"]["maxObjects"] == 20_000
    # The same shape with small pages is served, and so are fragments that hide breadth.
    small = await api.post(BREADTH, {"n": 3}, token=tenant.viewer)
    assert "errors" not in small and small["data"]["tracks"]["nodes"]
    hidden = """{ tracks(first: 100) { ...T } } fragment T on TrackConnection { nodes {
      artist { tracks(first: 100) { artist { tracks(first: 100) { id } } } } } }"""
    assert codes(await api.post(hidden, token=tenant.viewer)) == ["BAD_USER_INPUT"]
