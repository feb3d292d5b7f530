"""Training churn and popularity models over GraphQL in tests (any kind, by name)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tests.helpers import Api

TRAIN = """mutation($kind: ModelKind!, $activate: Boolean!) {
  trainModel(kind: $kind, activate: $activate) { id status kind } }"""
JOB = """query($id: ID!) { job(id: $id) { id kind status progress message modelVersion error } }"""
ACTIVATE = """mutation($kind: ModelKind!, $version: Int!) {
  activateModel(kind: $kind, version: $version) { version status } }"""
MODELS = """query($kind: ModelKind!) { models(kind: $kind) {
  version status jobId error artifactBytes params
  metrics { name value } dataWindow { start end items } timings { name value } } }"""


async def start(api: Api, token: str, kind: str, activate: bool = True) -> str:
    job = (await api.data(TRAIN, {"kind": kind, "activate": activate}, token))["trainModel"]
    assert job["status"] == "QUEUED" and job["kind"] == kind, job
    job_id: str = job["id"]
    return job_id


async def finished(api: Api, token: str, job_id: str, within: float = 110.0) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        job: dict[str, Any] = (await api.data(JOB, {"id": job_id}, token))["job"]
        if job["status"] in ("SUCCEEDED", "FAILED"):
            return job
        await asyncio.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish")


async def train(api: Api, token: str, kind: str, activate: bool = True) -> dict[str, Any]:
    """Train a version that must succeed; returns the finished job."""
    job = await finished(api, token, await start(api, token, kind, activate))
    assert job["status"] == "SUCCEEDED", job
    return job


async def versions(api: Api, token: str, kind: str) -> dict[int, dict[str, Any]]:
    found = (await api.data(MODELS, {"kind": kind}, token))["models"]
    return {m["version"]: m for m in found}


def metrics(version: dict[str, Any]) -> dict[str, float]:
    return {m["name"]: m["value"] for m in version["metrics"]}
