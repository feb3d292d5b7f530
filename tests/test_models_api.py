"""The model registry through real servers: train, follow progress over WebSocket, activate,
roll back, see an activation on a second replica through Redis; roles and tenancy."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SeededTenant
from tests.helpers import Api, ApiServer, TransportWs, codes, server_pair, token
from tests.training import (
    ACTIVATE,
    JOB,
    MODELS,
    SERVED,
    TRAIN,
    activate,
    served_version,
    start_training,
    train,
    versions,
    wait_for_job,
)
from tunelytics.domain.auth import Role
from tunelytics.domain.demo import DemoSize
from tunelytics.seeding import seed_demo
from tunelytics.storage import Storage

REDIS_URL = "redis://127.0.0.1:6379/0"

PROGRESS = """
subscription Progress($jobId: ID!) {
  trainingProgress(jobId: $jobId) { id status progress message modelVersion error }
}
"""

RECOMMEND = """
query Recommend($listenerId: ID!) {
  recommendations(listenerId: $listenerId, first: 5) { score reason track { id title } }
}
"""


async def follow(ws: TransportWs, job_id: str) -> list[dict[str, Any]]:
    """Every progress event of the job until the server completes the subscription."""
    operation = await ws.subscribe(PROGRESS, {"jobId": job_id})
    events: list[dict[str, Any]] = []
    while True:
        message = await ws.receive(within=110)
        assert message["id"] == operation, message
        if message["type"] == "complete":
            return events
        assert message["type"] == "next", message
        assert "errors" not in message["payload"], message
        events.append(message["payload"]["data"]["trainingProgress"])


async def test_train_follow_progress_activate_and_roll_back(
    server: ApiServer, api: Api, tenant: SeededTenant
) -> None:
    analyst = tenant.token(Role.ANALYST)
    assert await versions(api, analyst) == {}
    body = await api.post(RECOMMEND, {"listenerId": tenant.demo.listeners[0].id}, analyst)
    assert codes(body) == ["MODEL_NOT_READY"]
    assert "no recommender model has been trained" in body["errors"][0]["message"]

    async with TransportWs.connect(server.ws_url, analyst) as ws:
        job_id = await start_training(api, analyst)
        events = await follow(ws, job_id)
    assert {e["id"] for e in events} == {job_id}
    assert events[-1]["status"] == "SUCCEEDED" and events[-1]["progress"] == 1.0
    assert events[-1]["modelVersion"] == 1
    assert "RUNNING" in {e["status"] for e in events}
    progress = [e["progress"] for e in events]
    assert progress == sorted(progress) and len(set(progress)) > 3, progress

    job = (await api.data(JOB, {"id": job_id}, analyst))["job"]
    assert job["status"] == "SUCCEEDED" and job["createdBy"] == "tester" and job["error"] is None
    first = (await versions(api, analyst))[1]
    assert first["status"] == "READY" and first["jobId"] == job_id
    metrics = {m["name"]: m["value"] for m in first["metrics"]}
    assert 0.0 <= metrics["ndcg@10"] <= 1.0 and 0.0 <= metrics["recall@10"] <= 1.0
    assert first["dataWindow"]["items"] == len(tenant.demo.listens)
    assert {t["name"] for t in first["timings"]} == {"read_s", "fit_s", "store_s"}
    assert first["artifactBytes"] > 0

    # Trained is not served: a version is served once activated.
    body = await api.post(RECOMMEND, {"listenerId": tenant.demo.listeners[0].id}, analyst)
    assert codes(body) == ["MODEL_NOT_READY"] and "activate" in body["errors"][0]["message"]
    assert (await activate(api, analyst, 1))["status"] == "ACTIVE"
    assert await served_version(api, analyst) == 1
    found = await api.data(RECOMMEND, {"listenerId": tenant.demo.listeners[0].id}, analyst)
    titles = {t.id: t.title for t in tenant.demo.tracks}
    assert found["recommendations"]
    for item in found["recommendations"]:
        assert titles[item["track"]["id"]] == item["track"]["title"]
        assert item["reason"]

    # A second version trained with activate: served at once; the first is kept.
    second = await train(api, analyst, activate=True)
    assert second["modelVersion"] == 2
    assert await served_version(api, analyst) == 2
    states = {v: m["status"] for v, m in (await versions(api, analyst)).items()}
    assert states == {1: "RETIRED", 2: "ACTIVE"}

    # Rollback: the older version serves again, the newer one is kept.
    assert (await activate(api, analyst, 1))["status"] == "ACTIVE"
    assert await served_version(api, analyst) == 1
    states = {v: m["status"] for v, m in (await versions(api, analyst)).items()}
    assert states == {1: "ACTIVE", 2: "RETIRED"}


async def test_viewers_may_not_train_or_activate(api: Api, tenant: SeededTenant) -> None:
    for role in (Role.VIEWER, Role.INGEST):
        caller = tenant.token(role)
        assert codes(await api.post(TRAIN, {"activate": False}, caller)) == ["FORBIDDEN"]
        assert codes(await api.post(ACTIVATE, {"version": 1}, caller)) == ["FORBIDDEN"]
    assert codes(await api.post(TRAIN, {"activate": False})) == ["UNAUTHENTICATED"]
    # Viewers read the registry; ingest accounts do not.
    assert (await api.data(MODELS, token=tenant.viewer))["models"] == []
    assert codes(await api.post(MODELS, token=tenant.token(Role.INGEST))) == ["FORBIDDEN"]
    # Nothing was started by the refused calls.
    assert await versions(api, tenant.admin) == {}


async def test_another_tenant_cannot_see_follow_or_activate_models(
    server: ApiServer, api: Api, tenant: SeededTenant, other_tenant: SeededTenant
) -> None:
    owner = tenant.token(Role.ANALYST)
    job = await train(api, owner, activate=True)
    intruder = other_tenant.admin  # same IDs, another tenant, the strongest role
    assert await versions(api, intruder) == {}
    assert codes(await api.post(JOB, {"id": job["id"]}, intruder)) == ["NOT_FOUND"]
    assert codes(await api.post(ACTIVATE, {"version": 1}, intruder)) == ["NOT_FOUND"]
    assert codes(await api.post(SERVED, token=intruder)) == ["MODEL_NOT_READY"]
    listener = other_tenant.demo.listeners[0].id
    assert codes(await api.post(RECOMMEND, {"listenerId": listener}, intruder)) == [
        "MODEL_NOT_READY"
    ]
    async with TransportWs.connect(server.ws_url, intruder) as ws:
        operation = await ws.subscribe(PROGRESS, {"jobId": job["id"]})
        message = await ws.receive()
    assert message["id"] == operation and message["type"] == "next", message
    assert message["payload"]["data"] is None
    assert [e["extensions"]["code"] for e in message["payload"]["errors"]] == ["NOT_FOUND"]

    # The other tenant's own model is trained on its own catalogue and history only.
    await train(api, other_tenant.token(Role.ANALYST), activate=True)
    assert await served_version(api, intruder) == 1
    assert await served_version(api, owner) == 1
    theirs = {t.id: t.title for t in other_tenant.demo.tracks}
    found = (await api.data(RECOMMEND, {"listenerId": listener}, intruder))["recommendations"]
    assert found
    for item in found:
        assert theirs[item["track"]["id"]] == item["track"]["title"]


async def test_bad_versions_jobs_and_a_failed_training(
    api: Api, storage: Storage, tenant: SeededTenant
) -> None:
    admin = tenant.admin
    assert codes(await api.post(ACTIVATE, {"version": 7}, admin)) == ["NOT_FOUND"]
    for bad in ("nope", "0" * 24, "6b0f2b3e4eef91004d3f6cf3"):
        assert codes(await api.post(JOB, {"id": bad}, admin)) == ["NOT_FOUND"]
    assert codes(await api.post("query { models(kind: RECOMMENDER, first: 500) { version } }",
                                token=admin)) == ["BAD_USER_INPUT"]  # fmt: skip
    assert codes(await api.post("query { models(kind: NOPE) { version } }", token=admin)) == [
        "BAD_USER_INPUT"
    ]

    # A tenant with a catalogue but no listens: nothing to learn from.
    slug = f"t-{uuid.uuid4().hex[:10]}"
    await seed_demo(storage, slug, size=DemoSize(artists=2, tracks=5, listeners=2, listens=5))
    await storage.db["listens"].delete_many({"tenant_id": slug})
    empty = token(slug, Role.ADMIN)
    job = await wait_for_job(api, empty, await start_training(api, empty, activate=True))
    assert job["status"] == "FAILED" and job["error"], job
    assert "Traceback" not in job["error"]
    failed = (await versions(api, empty))[1]
    assert failed["status"] == "FAILED" and failed["error"] == job["error"]
    body = await api.post(ACTIVATE, {"version": 1}, empty)
    assert codes(body) == ["MODEL_NOT_READY"] and "failed" in body["errors"][0]["message"]
    body = await api.post(RECOMMEND, {"listenerId": "li-00000"}, empty)
    assert codes(body) == ["MODEL_NOT_READY"] and "failed to train" in body["errors"][0]["message"]


@pytest.fixture
def pair_env(mongo_url: str, database_name: str) -> dict[str, str]:
    return {"MONGODB_URL": mongo_url, "MONGODB_DATABASE": database_name, "REDIS_URL": REDIS_URL}


async def wait_for_served(api: Api, caller: str, version: int, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await served_version(api, caller) == version:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the replica never served version {version}")


async def test_an_activation_on_one_replica_switches_the_other(
    api: Api, pair_env: dict[str, str], tmp_path: Path, tenant: SeededTenant
) -> None:
    admin = tenant.admin
    # Two versions, trained before the replicas start; the first is active.
    await train(api, admin, activate=True)
    await train(api, admin)
    with server_pair(pair_env, tmp_path) as (first, second):
        one, two = Api(first.graphql_url), Api(second.graphql_url)
        try:
            assert await served_version(two, admin) == 1  # loaded, held in memory
            await activate(one, admin, 2)
            await wait_for_served(two, admin, 2)
            await activate(one, admin, 1)  # rollback reaches it too
            await wait_for_served(two, admin, 1)
            assert await served_version(one, admin) == 1
        finally:
            await one.client.aclose()
            await two.client.aclose()


async def test_the_cli_trains_and_activates_with_the_same_job(
    api: Api, mongo_url: str, database_name: str, tenant: SeededTenant
) -> None:
    env = {**os.environ, "MONGODB_URL": mongo_url, "MONGODB_DATABASE": database_name}
    env["REDIS_URL"] = ""
    command = [sys.executable, "-m", "tunelytics", "train", "--tenant", tenant.id, "--activate"]
    done = await asyncio.to_thread(
        subprocess.run, command, env=env, capture_output=True, text=True, timeout=110
    )
    assert done.returncode == 0, done.stderr
    assert f"trained and activated recommender version 1 for tenant {tenant.id}" in done.stdout
    assert "100%" in done.stderr  # the progress bar
    model = (await versions(api, tenant.viewer))[1]
    assert model["status"] == "ACTIVE" and model["createdBy"] == "cli"
    # The server picks the active version up on its first request for the tenant.
    assert await served_version(api, tenant.viewer) == 1

    missing = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "tunelytics", "train", "--tenant", "no-such-tenant", "--quiet"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode != 0 and "no tenant no-such-tenant" in missing.stderr
