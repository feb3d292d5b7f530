"""Churn and popularity models in the registry through the real server: trainModel with
trainingProgress over WebSocket, hold-out metrics on the version, activation and
rollback, roles, tenancy, MODEL_NOT_READY, and scores that follow new listens."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.helpers import Api, ApiServer, TransportWs, codes, record_listens, token
from tests.predict_training import ACTIVATE, JOB, TRAIN, metrics, start, train, versions
from tunelytics.domain.auth import Role
from tunelytics.domain.demo import Demo, DemoSize
from tunelytics.seeding import seed_demo
from tunelytics.storage import Storage

SIZE = DemoSize(artists=6, tracks=50, listeners=80, listens=5_000, days=70)
PROGRESS = """subscription($jobId: ID!) {
  trainingProgress(jobId: $jobId) { id kind status progress message modelVersion error } }"""
AT_RISK = """query($first: Int!) { atRiskListeners(first: $first) { listenerId probability } }"""
CHURN_RISK = """query($id: ID!) { churnRisk(listenerId: $id) { listenerId probability asOf } }"""
RISING = """query { risingTracks(first: 100) { track { id } growth lastPlays7d } }"""
POPULARITY = """query($id: ID!) { trackPopularity(trackId: $id) { lastPlays7d } }"""
SERVED = """query($kind: ModelKind!) { servedModel(kind: $kind) { version status } }"""


async def seeded(storage: Storage, seed: int) -> tuple[str, Demo]:
    slug = f"t-{uuid.uuid4().hex[:10]}"
    return slug, await seed_demo(storage, slug, name=slug, size=SIZE, seed=seed)


async def follow(ws: TransportWs, job_id: str) -> list[dict[str, Any]]:
    operation = await ws.subscribe(PROGRESS, {"jobId": job_id})
    events: list[dict[str, Any]] = []
    while True:
        message = await ws.receive(within=110)
        assert message["id"] == operation, message
        if message["type"] == "complete":
            return events
        assert message["type"] == "next" and "errors" not in message["payload"], message
        events.append(message["payload"]["data"]["trainingProgress"])


@pytest.mark.parametrize(
    ("kind", "measured"),
    [
        ("CHURN", {"auc", "brier", "brier_base_rate", "auc_recency_only", "holdout_listeners"}),
        ("POPULARITY", {"mae", "mae_naive", "spearman", "spearman_naive", "holdout_tracks"}),
    ],
)
async def test_train_follow_activate_and_roll_back(
    server: ApiServer, api: Api, storage: Storage, kind: str, measured: set[str]
) -> None:
    slug, demo = await seeded(storage, seed=11)
    analyst, viewer = token(slug, Role.ANALYST), token(slug, Role.VIEWER)
    query, variables = (
        (AT_RISK, {"first": 5}) if kind == "CHURN" else (RISING, {})  # the kind's own field
    )
    body = await api.post(query, variables, viewer)
    assert codes(body) == ["MODEL_NOT_READY"], body
    assert f"no {kind.lower()} model has been trained yet" in body["errors"][0]["message"]

    async with TransportWs.connect(server.ws_url, analyst) as ws:
        job_id = await start(api, analyst, kind, activate=False)
        events = await follow(ws, job_id)
    assert {e["id"] for e in events} == {job_id} and {e["kind"] for e in events} == {kind}
    assert events[-1]["status"] == "SUCCEEDED" and events[-1]["progress"] == 1.0
    assert events[-1]["modelVersion"] == 1 and "RUNNING" in {e["status"] for e in events}
    progress = [e["progress"] for e in events]
    assert progress == sorted(progress) and len(set(progress)) >= 3, progress

    first = (await versions(api, viewer, kind))[1]
    assert first["status"] == "READY" and first["jobId"] == job_id and first["artifactBytes"] > 0
    assert measured <= metrics(first).keys(), first["metrics"]
    assert {t["name"] for t in first["timings"]} == {"read_s", "fit_s", "store_s"}
    window = first["dataWindow"]
    assert window["items"] == len(demo.listens)
    if kind == "CHURN":
        # 80 listeners: measured, not necessarily good (the domain tests check quality).
        assert 0.0 <= metrics(first)["auc"] <= 1.0 and 0.0 <= metrics(first)["brier"] <= 1.0
        assert first["params"]["calibration"], first["params"]
    else:
        assert {"alpha", "damping", "prior_plays"} <= first["params"].keys()

    # Trained is not served: MODEL_NOT_READY says to activate.
    body = await api.post(query, variables, viewer)
    assert codes(body) == ["MODEL_NOT_READY"] and "activate" in body["errors"][0]["message"]
    activated = await api.data(ACTIVATE, {"kind": kind, "version": 1}, analyst)
    assert activated["activateModel"]["status"] == "ACTIVE"
    served = await api.data(SERVED, {"kind": kind}, viewer)
    assert served["servedModel"]["version"] == 1
    assert "errors" not in await api.post(query, variables, viewer)

    await train(api, analyst, kind, activate=True)
    assert (await api.data(SERVED, {"kind": kind}, viewer))["servedModel"]["version"] == 2
    await api.data(ACTIVATE, {"kind": kind, "version": 1}, analyst)  # rollback
    states = {v: m["status"] for v, m in (await versions(api, viewer, kind)).items()}
    assert states == {1: "ACTIVE", 2: "RETIRED"}
    assert (await api.data(SERVED, {"kind": kind}, viewer))["servedModel"]["version"] == 1
    assert "errors" not in await api.post(query, variables, viewer)


async def test_viewers_may_not_train_or_activate_and_tenants_stay_apart(
    api: Api, storage: Storage
) -> None:
    a, demo_a = await seeded(storage, seed=12)
    b, _ = await seeded(storage, seed=13)  # the same listener and track IDs
    for role in (Role.VIEWER, Role.INGEST):
        for kind in ("CHURN", "POPULARITY"):
            caller = token(a, role)
            refused = await api.post(TRAIN, {"kind": kind, "activate": True}, caller)
            assert codes(refused) == ["FORBIDDEN"]
            refused = await api.post(ACTIVATE, {"kind": kind, "version": 1}, caller)
            assert codes(refused) == ["FORBIDDEN"]
    assert await versions(api, token(a, Role.VIEWER), "CHURN") == {}

    job = await train(api, token(a, Role.ANALYST), "CHURN")
    await train(api, token(a, Role.ANALYST), "POPULARITY")
    intruder = token(b, Role.ADMIN)  # the strongest role of another tenant
    assert await versions(api, intruder, "CHURN") == {}
    assert codes(await api.post(JOB, {"id": job["id"]}, intruder)) == ["NOT_FOUND"]
    refused = await api.post(ACTIVATE, {"kind": "CHURN", "version": 1}, intruder)
    assert codes(refused) == ["NOT_FOUND"]
    listener = demo_a.listeners[0].id
    for query, variables in (
        (AT_RISK, {"first": 5}),
        (CHURN_RISK, {"id": listener}),
        (RISING, {}),
        (POPULARITY, {"id": demo_a.tracks[0].id}),
    ):
        assert "errors" not in await api.post(query, variables, token(a, Role.VIEWER))
        body = await api.post(query, variables, intruder)
        assert codes(body) == ["MODEL_NOT_READY"], (query, body)

    # B's own model scores B's own listens only.
    await train(api, token(b, Role.ANALYST), "CHURN")
    mine = await api.data(CHURN_RISK, {"id": listener}, token(a, Role.VIEWER))
    theirs = await api.data(CHURN_RISK, {"id": listener}, intruder)
    assert mine["churnRisk"]["probability"] != theirs["churnRisk"]["probability"]


async def test_scores_follow_new_listens(api: Api, storage: Storage) -> None:
    slug, demo = await seeded(storage, seed=14)
    analyst, viewer = token(slug, Role.ANALYST), token(slug, Role.VIEWER)
    await train(api, analyst, "CHURN")
    await train(api, analyst, "POPULARITY")
    ranked = (await api.data(AT_RISK, {"first": 100}, viewer))["atRiskListeners"]
    riskiest = ranked[0]["listenerId"]
    before = (await api.data(CHURN_RISK, {"id": riskiest}, viewer))["churnRisk"]
    track = demo.tracks[0].id
    plays = (await api.data(POPULARITY, {"id": track}, viewer))["trackPopularity"]
    # The riskiest listener comes back, yesterday, a few times, on one track.
    at = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0) - timedelta(days=1)
    listens = [
        {"listenerId": riskiest, "trackId": track, "msPlayed": 120_000,
         "playedAt": (at + timedelta(minutes=5 * i)).isoformat()}
        for i in range(6)
    ]  # fmt: skip
    await record_listens(api, token(slug, Role.INGEST), listens)
    after = (await api.data(CHURN_RISK, {"id": riskiest}, viewer))["churnRisk"]
    assert after["probability"] < before["probability"]
    assert after["asOf"] == before["asOf"]  # the tenant's newest listen is still today's
    fresh = (await api.data(POPULARITY, {"id": track}, viewer))["trackPopularity"]
    assert fresh["lastPlays7d"] == plays["lastPlays7d"] + len(listens)


async def test_the_cli_trains_churn_with_the_same_job(
    api: Api, storage: Storage, mongo_url: str, database_name: str
) -> None:
    slug, _ = await seeded(storage, seed=15)
    env = {**os.environ, "MONGODB_URL": mongo_url, "MONGODB_DATABASE": database_name}
    env["REDIS_URL"] = ""
    command = [sys.executable, "-m", "tunelytics", "train", "--tenant", slug, "--kind", "churn",
               "--activate", "--quiet"]  # fmt: skip
    done = await asyncio.to_thread(
        subprocess.run, command, env=env, capture_output=True, text=True, timeout=110
    )
    assert done.returncode == 0, done.stderr
    assert f"trained and activated churn version 1 for tenant {slug}" in done.stdout
    (model,) = (await versions(api, token(slug, Role.VIEWER), "CHURN")).values()
    assert model["status"] == "ACTIVE" and "auc" in metrics(model)
    assert "errors" not in await api.post(AT_RISK, {"first": 3}, token(slug, Role.VIEWER))


async def test_an_activation_rescores_with_the_served_version(api: Api, storage: Storage) -> None:
    slug, demo = await seeded(storage, seed=16)
    analyst, viewer = token(slug, Role.ANALYST), token(slug, Role.VIEWER)
    await train(api, analyst, "CHURN")  # version 1
    # New listens, then version 2 learns from them: other coefficients.
    at = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0) - timedelta(days=2)
    listens = [
        {"listenerId": li.id, "trackId": demo.tracks[0].id, "msPlayed": 90_000,
         "playedAt": (at + timedelta(minutes=i)).isoformat()}
        for i, li in enumerate(demo.listeners[:20])
    ]  # fmt: skip
    await record_listens(api, token(slug, Role.INGEST), listens)
    await train(api, analyst, "CHURN")  # version 2, active
    latest = (await api.data(AT_RISK, {"first": 20}, viewer))["atRiskListeners"]
    await api.data(ACTIVATE, {"kind": "CHURN", "version": 1}, analyst)
    older = (await api.data(AT_RISK, {"first": 20}, viewer))["atRiskListeners"]
    assert older != latest  # the same data, scored by the version now served
    await api.data(ACTIVATE, {"kind": "CHURN", "version": 2}, analyst)
    assert (await api.data(AT_RISK, {"first": 20}, viewer))["atRiskListeners"] == latest
