"""Training models over GraphQL in tests: start a job, wait for it, activate a version."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tests.helpers import Api

TRAIN = """
mutation Train($activate: Boolean!) {
  trainModel(kind: RECOMMENDER, activate: $activate) { id status progress kind }
}
"""

JOB = """
query Job($id: ID!) {
  job(id: $id) { id kind status progress message modelVersion error createdBy }
}
"""

ACTIVATE = """
mutation Activate($version: Int!) {
  activateModel(kind: RECOMMENDER, version: $version) { version status activatedAt }
}
"""

MODELS = """
query Models {
  models(kind: RECOMMENDER) {
    version status createdBy jobId error artifactBytes
    metrics { name value }
    dataWindow { start end items }
    timings { name value }
  }
}
"""

SERVED = "query { servedModel(kind: RECOMMENDER) { version status } }"


async def start_training(api: Api, token: str, activate: bool = False) -> str:
    job = (await api.data(TRAIN, {"activate": activate}, token))["trainModel"]
    assert job["status"] == "QUEUED", job
    job_id: str = job["id"]
    return job_id


async def wait_for_job(api: Api, token: str, job_id: str, within: float = 110.0) -> dict[str, Any]:
    """The job once finished (succeeded or failed)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        job: dict[str, Any] = (await api.data(JOB, {"id": job_id}, token))["job"]
        if job["status"] in ("SUCCEEDED", "FAILED"):
            return job
        await asyncio.sleep(0.25)
    raise AssertionError(f"job {job_id} did not finish")


async def train(api: Api, token: str, activate: bool = False) -> dict[str, Any]:
    """Train a recommender that must succeed; returns the finished job."""
    job = await wait_for_job(api, token, await start_training(api, token, activate))
    assert job["status"] == "SUCCEEDED", job
    return job


async def activate(api: Api, token: str, version: int) -> dict[str, Any]:
    model: dict[str, Any] = (await api.data(ACTIVATE, {"version": version}, token))["activateModel"]
    return model


async def versions(api: Api, token: str) -> dict[int, dict[str, Any]]:
    found = (await api.data(MODELS, token=token))["models"]
    return {m["version"]: m for m in found}


async def served_version(api: Api, token: str) -> int:
    version: int = (await api.data(SERVED, token=token))["servedModel"]["version"]
    return version
