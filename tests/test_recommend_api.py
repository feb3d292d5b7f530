"""Recommendations through a real server: results from the tenant's own catalogue, the
knobs, cold start, micro-batched answers equal to single ones, and every bad input coded."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import torch

from tests.conftest import SeededTenant, make_tenant
from tests.helpers import Api, ApiServer, codes
from tests.training import train
from tunelytics.pubsub import LocalBroadcaster
from tunelytics.services.serving import BatchKey, Coalescer, MicroBatcher, ModelServer, batch_key
from tunelytics.storage import Storage

RECOMMEND = """
query Recommend($listenerId: ID!, $first: Int!, $diversity: Float!, $exclude: Boolean!,
                $maxPerArtist: Int) {
  recommendations(listenerId: $listenerId, first: $first, diversity: $diversity,
                  excludeListened: $exclude, maxPerArtist: $maxPerArtist) {
    score reason becauseTrackId track { id title artist { id } }
  }
}
"""

SIMILAR = """
query Similar($trackId: ID!, $first: Int!) {
  similarTracks(trackId: $trackId, first: $first) { score reason track { id title } }
}
"""

FOR_TRACKS = """
query ForTracks($seeds: [ID!]!, $first: Int!) {
  recommendForTracks(seedTrackIds: $seeds, first: $first) { score reason track { id title } }
}
"""


@pytest.fixture(scope="module")
async def trained(server: ApiServer, storage: Storage) -> AsyncIterator[SeededTenant]:
    """A tenant whose recommender is trained and active (once for this module)."""
    seeded = await make_tenant(storage, seed=3)
    client = Api(server.graphql_url)
    try:
        await train(client, seeded.admin, activate=True)
    finally:
        await client.client.aclose()
    yield seeded


def recommend_vars(listener_id: str, **overrides: Any) -> dict[str, Any]:
    return {
        "listenerId": listener_id,
        "first": 5,
        "diversity": 0.0,
        "exclude": True,
        "maxPerArtist": None,
        **overrides,
    }


def check_own_tracks(tenant: SeededTenant, found: list[dict[str, Any]]) -> None:
    titles = {t.id: t.title for t in tenant.demo.tracks}
    for item in found:
        assert titles[item["track"]["id"]] == item["track"]["title"]
        assert isinstance(item["score"], float) and item["reason"]


async def test_recommendations_come_from_the_catalogue_and_skip_what_was_heard(
    api: Api, trained: SeededTenant
) -> None:
    listener = trained.demo.listeners[0].id
    own = [li for li in trained.demo.listens if li.listener_id == listener]
    # The model excludes what the listener liked; a track they only skipped is evidence
    # against it, not a listen (domain/recommend).
    skipped = {li.track_id for li in own if li.skipped}
    heard = {li.track_id for li in own if not li.skipped} - skipped
    found = (await api.data(RECOMMEND, recommend_vars(listener), trained.viewer))["recommendations"]
    assert 0 < len(found) <= 5
    check_own_tracks(trained, found)
    assert not heard & {item["track"]["id"] for item in found}
    scores = [item["score"] for item in found]
    assert scores == sorted(scores, reverse=True)
    # Reasons name tracks by title, not by ID.
    for item in found:
        if item["becauseTrackId"]:
            assert item["becauseTrackId"] not in item["reason"]

    with_heard = (
        await api.data(RECOMMEND, recommend_vars(listener, exclude=False, first=40), trained.viewer)
    )["recommendations"]
    assert heard & {item["track"]["id"] for item in with_heard}


async def test_at_most_n_per_artist_and_diversity(api: Api, trained: SeededTenant) -> None:
    listener = trained.demo.listeners[1].id
    capped = (
        await api.data(RECOMMEND, recommend_vars(listener, first=6, maxPerArtist=1), trained.viewer)
    )["recommendations"]
    artists = [item["track"]["artist"]["id"] for item in capped]
    assert artists and len(artists) == len(set(artists))
    diverse = (await api.data(RECOMMEND, recommend_vars(listener, diversity=1.0), trained.viewer))[
        "recommendations"
    ]
    check_own_tracks(trained, diverse)


async def test_similar_tracks_and_anonymous_sessions(api: Api, trained: SeededTenant) -> None:
    track = trained.demo.tracks[0].id
    similar = (await api.data(SIMILAR, {"trackId": track, "first": 5}, trained.viewer))[
        "similarTracks"
    ]
    assert similar and track not in {item["track"]["id"] for item in similar}
    check_own_tracks(trained, similar)

    seeds = [t.id for t in trained.demo.tracks[:3]]
    session = (await api.data(FOR_TRACKS, {"seeds": seeds, "first": 5}, trained.viewer))[
        "recommendForTracks"
    ]
    assert session and not set(seeds) & {item["track"]["id"] for item in session}
    check_own_tracks(trained, session)
    # No history at all: the popular side answers.
    popular = (await api.data(FOR_TRACKS, {"seeds": [], "first": 5}, trained.viewer))[
        "recommendForTracks"
    ]
    assert len(popular) == 5
    check_own_tracks(trained, popular)


async def test_a_listener_new_since_training_gets_results(api: Api, trained: SeededTenant) -> None:
    new_id = f"li-new-{uuid.uuid4().hex[:6]}"
    upsert = """
    mutation($listeners: [ListenerInput!]!) { upsertListeners(listeners: $listeners) {
      rejected { message } } }
    """
    listener = {"id": new_id, "country": "SE", "plan": "free", "signupAt": "2026-11-01T00:00:00Z"}
    body = await api.data(upsert, {"listeners": [listener]}, trained.admin)
    assert body["upsertListeners"]["rejected"] == []
    found = (await api.data(RECOMMEND, recommend_vars(new_id), trained.viewer))["recommendations"]
    assert len(found) == 5
    check_own_tracks(trained, found)


async def test_concurrent_requests_get_the_answers_single_ones_get(
    api: Api, trained: SeededTenant
) -> None:
    listeners = [li.id for li in trained.demo.listeners]
    single = [
        (await api.data(RECOMMEND, recommend_vars(li), trained.viewer))["recommendations"]
        for li in listeners
    ]
    together = await asyncio.gather(
        *(api.data(RECOMMEND, recommend_vars(li), trained.viewer) for li in listeners * 3)
    )
    for i, body in enumerate(together):
        got = [item["track"]["id"] for item in body["recommendations"]]
        assert got == [item["track"]["id"] for item in single[i % len(listeners)]]


async def test_two_tenants_asking_together_each_get_their_own_tracks(
    api: Api, server: ApiServer, storage: Storage, trained: SeededTenant
) -> None:
    """Concurrent requests of two tenants share micro-batch turns and track reads: the same
    listener and track IDs, different catalogues, and nothing crosses over."""
    other = await make_tenant(storage, seed=4)
    await train(api, other.admin, activate=True)
    listeners = [li.id for li in trained.demo.listeners[:6]]
    asks = [(tenant, li) for li in listeners for tenant in (trained, other)] * 2
    bodies = await asyncio.gather(
        *(api.data(RECOMMEND, recommend_vars(li), tenant.viewer) for tenant, li in asks),
        *(
            api.data(SIMILAR, {"trackId": tenant.demo.tracks[0].id, "first": 5}, tenant.viewer)
            for tenant in (trained, other)
        ),
    )
    for (tenant, _), body in zip(asks, bodies, strict=False):
        assert body["recommendations"]
        check_own_tracks(tenant, body["recommendations"])
    for tenant, body in zip((trained, other), bodies[len(asks) :], strict=True):
        check_own_tracks(tenant, body["similarTracks"])
    titles = {t.id: t.title for t in trained.demo.tracks}
    assert any(titles[t.id] != t.title for t in other.demo.tracks if t.id in titles)


async def test_bad_inputs_get_coded_errors(api: Api, trained: SeededTenant) -> None:
    viewer = trained.viewer
    listener = trained.demo.listeners[0].id
    track = trained.demo.tracks[0].id
    cases: list[tuple[str, dict[str, Any], str]] = [
        (RECOMMEND, recommend_vars("li-nobody"), "NOT_FOUND"),
        (RECOMMEND, recommend_vars(listener, first=101), "BAD_USER_INPUT"),
        (RECOMMEND, recommend_vars(listener, first=0), "BAD_USER_INPUT"),
        (RECOMMEND, recommend_vars(listener, diversity=1.5), "BAD_USER_INPUT"),
        (RECOMMEND, recommend_vars(listener, maxPerArtist=0), "BAD_USER_INPUT"),
        (RECOMMEND, recommend_vars(listener, first="ten"), "BAD_USER_INPUT"),
        (SIMILAR, {"trackId": "tr-nothing", "first": 5}, "NOT_FOUND"),
        (SIMILAR, {"trackId": track, "first": 1000}, "BAD_USER_INPUT"),
        (FOR_TRACKS, {"seeds": [track, "tr-nothing"], "first": 5}, "NOT_FOUND"),
        (FOR_TRACKS, {"seeds": [track] * 51, "first": 5}, "BAD_USER_INPUT"),
    ]
    for query, variables, code in cases:
        body = await api.post(query, variables, viewer)
        assert codes(body) == [code], (variables, body)
        assert "Traceback" not in str(body)
    assert codes(await api.post(RECOMMEND, recommend_vars(listener))) == ["UNAUTHENTICATED"]


async def test_a_tenant_without_a_model_gets_model_not_ready(
    api: Api, trained: SeededTenant, other_tenant: SeededTenant
) -> None:
    # Same listener and track IDs as a tenant that has a model.
    for query, variables in [
        (RECOMMEND, recommend_vars(other_tenant.demo.listeners[0].id)),
        (SIMILAR, {"trackId": other_tenant.demo.tracks[0].id, "first": 5}),
        (FOR_TRACKS, {"seeds": [], "first": 5}),
    ]:
        assert codes(await api.post(query, variables, other_tenant.viewer)) == ["MODEL_NOT_READY"]


def test_inference_runs_torch_on_its_own_thread_alone(storage: Storage) -> None:
    """The inference thread shares the cores with the event loop: its torch ops use one
    thread; threads that start later (training) keep torch's default."""

    def threads_in_a_new_thread() -> int:
        with ThreadPoolExecutor(1) as other:
            return other.submit(torch.get_num_threads).result()

    default = threads_in_a_new_thread()
    models = ModelServer(storage, LocalBroadcaster(), {})
    try:
        assert models.executor.submit(torch.get_num_threads).result() == 1
        assert threads_in_a_new_thread() == default
    finally:
        models.executor.shutdown()


async def test_the_micro_batcher_makes_one_call_per_key_and_aligns_results() -> None:
    calls: list[tuple[BatchKey, list[int]]] = []

    def run(key: BatchKey, items: list[int]) -> list[int]:
        calls.append((key, items))
        factor = dict(key[1])["factor"]
        assert isinstance(factor, int)
        return [item * factor for item in items]

    with ThreadPoolExecutor(1) as executor:
        batcher: MicroBatcher[int, int] = MicroBatcher(run, executor, window_s=0.05, max_batch=64)
        doubled, tripled = batch_key("f", {"factor": 2}), batch_key("f", {"factor": 3})
        results = await asyncio.gather(
            *(batcher.submit(doubled, i) for i in range(10)),
            *(batcher.submit(tripled, i) for i in range(5)),
        )
    assert results == [i * 2 for i in range(10)] + [i * 3 for i in range(5)]
    assert sorted(len(items) for _, items in calls) == [5, 10]


async def test_calls_arriving_while_a_batch_runs_go_together_when_it_is_done() -> None:
    """Windows that close while a batch runs do not queue small batches behind it."""
    started, release = threading.Event(), threading.Event()
    calls: list[list[int]] = []

    def run(key: BatchKey, items: list[int]) -> list[int]:
        calls.append(items)
        started.set()
        release.wait(10)
        return items

    with ThreadPoolExecutor(1) as executor:
        batcher: MicroBatcher[int, int] = MicroBatcher(run, executor, window_s=0.001)
        key = batch_key("f", {})
        first = asyncio.ensure_future(batcher.submit(key, 0))
        await asyncio.to_thread(started.wait, 10)
        later = []
        for i in range(1, 6):  # each in a window of its own
            later.append(asyncio.ensure_future(batcher.submit(key, i)))
            await asyncio.sleep(0.005)
        release.set()
        assert await asyncio.gather(first, *later) == list(range(6))
    assert calls == [[0], [1, 2, 3, 4, 5]]


async def test_a_failing_batch_fails_each_caller() -> None:
    def run(key: BatchKey, items: list[int]) -> list[int]:
        raise ValueError("broken model")

    with ThreadPoolExecutor(1) as executor:
        batcher: MicroBatcher[int, int] = MicroBatcher(run, executor, window_s=0.01)
        key = batch_key("f", {})
        results = await asyncio.gather(
            *(batcher.submit(key, i) for i in range(3)), return_exceptions=True
        )
    assert all(isinstance(r, ValueError) for r in results)


async def test_concurrent_lookups_are_one_fetch_and_each_gets_its_own_keys() -> None:
    fetched: list[list[str]] = []

    async def fetch(keys: list[str]) -> dict[str, str]:
        fetched.append(keys)
        return {k: k.upper() for k in keys if k != "gone"}

    lookup: Coalescer[str, str] = Coalescer(fetch, window_s=0.05)
    results = await asyncio.gather(
        lookup.get_many(["a", "b"]), lookup.get_many(["b", "gone"]), lookup.get_many([])
    )
    assert results == [["A", "B"], ["B", None], []]
    assert fetched == [["a", "b", "gone"]]
    # The next turn reads afresh.
    assert await lookup.get_many(["c"]) == ["C"] and len(fetched) == 2


async def test_a_failing_lookup_fails_each_caller() -> None:
    async def fetch(keys: list[str]) -> dict[str, str]:
        raise ConnectionError("database down")

    lookup: Coalescer[str, str] = Coalescer(fetch, window_s=0.01)
    results = await asyncio.gather(
        lookup.get_many(["a"]), lookup.get_many(["b"]), return_exceptions=True
    )
    assert all(isinstance(r, ConnectionError) for r in results)
