"""The command line as users run it: serve with the embedded default, seed, token, tenant."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.helpers import TEST_SECRET
from tunelytics.storage import Storage
from tunelytics.storage.embedded import free_port


def cli(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tunelytics", *args],
        env={**os.environ, "JWT_SECRET": TEST_SECRET, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


async def test_seed_is_idempotent_and_resettable(
    mongo_url: str, database_name: str, storage: Storage
) -> None:
    slug = f"t-cli-{uuid.uuid4().hex[:8]}"
    env = {"MONGODB_URL": mongo_url, "MONGODB_DATABASE": database_name}
    first = cli("seed", "--tenant", slug, "--listens", "3000", env=env)
    assert first.returncode == 0, first.stderr
    assert f"seeded tenant {slug}" in first.stdout
    assert "100%" in first.stderr  # the progress bar ran to the end
    assert await storage.db["listens"].count_documents({"tenant_id": slug}) == 3000
    assert await storage.db["tracks"].count_documents({"tenant_id": slug}) == 5000

    again = cli("seed", "--tenant", slug, "--listens", "3000", "--quiet", env=env)
    assert "already has a catalogue" in again.stdout
    assert await storage.db["listens"].count_documents({"tenant_id": slug}) == 3000

    reset = cli("seed", "--tenant", slug, "--listens", "1000", "--reset", "--quiet", env=env)
    assert reset.returncode == 0, reset.stderr
    assert await storage.db["listens"].count_documents({"tenant_id": slug}) == 1000


async def test_tenant_create(mongo_url: str, database_name: str, storage: Storage) -> None:
    slug = f"t-new-{uuid.uuid4().hex[:8]}"
    env = {"MONGODB_URL": mongo_url, "MONGODB_DATABASE": database_name}
    assert "created" in cli("tenant", "create", slug, "--name", "New", env=env).stdout
    assert "already exists" in cli("tenant", "create", slug, "--name", "New", env=env).stdout
    tenant = await storage.tenants.get(slug)
    assert tenant is not None and tenant.name == "New"
    bad = cli("tenant", "create", "Not A Slug", "--name", "x", env=env)
    assert bad.returncode != 0


def test_token_rejects_unknown_role_and_bad_ttl() -> None:
    assert cli("token", "--tenant", "demo", "--role", "root", env={}).returncode != 0
    assert (
        cli("token", "--tenant", "demo", "--role", "viewer", "--ttl", "soon", env={}).returncode
        != 0
    )


def _start_serve(data_dir: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "JWT_SECRET": TEST_SECRET, "TUNELYTICS_DATA_DIR": str(data_dir)}
    for name in ("MONGODB_URL", "REDIS_URL", "MONGODB_DATABASE"):
        env.pop(name, None)
    return subprocess.Popen(
        [sys.executable, "-m", "tunelytics", "serve", "--port", str(port)],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def _wait_ready(process: subprocess.Popen[bytes], port: int, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"not ready in {timeout}s:\n{log.read_text()}")


def _track_count(port: int, token: str) -> int:
    query = "{ tracks(first: 1) { totalCount } artists(first: 1) { edges { node { id } } } }"
    body = httpx.post(
        f"http://127.0.0.1:{port}/graphql",
        json={"query": query},
        headers={"Authorization": f"Bearer {token}"},
        # The demo recommender trains in the background right after start-up and competes
        # with this read for the embedded database (docs/benchmarks.md, Models).
        timeout=60,
    ).json()
    count: int = body["data"]["tracks"]["totalCount"]
    return count


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


@pytest.mark.timeout(300)
def test_serve_with_the_embedded_default(tmp_path: Path) -> None:
    """The README's serve command: embedded database, demo seeded once, a token that works,
    Ctrl-C stops both processes, and a second start reuses the data."""
    data_dir, log = tmp_path / "data", tmp_path / "serve.log"
    port = free_port()
    process = _start_serve(data_dir, port, log)
    try:
        _wait_ready(process, port, log, timeout=180)
        output = log.read_text()
        assert f"GraphiQL: http://127.0.0.1:{port}/graphql" in output
        assert "Seeded the demo tenant 'demo'" in output
        token = re.search(r'"Authorization": "Bearer ([\w.-]+)"', output)
        assert token, output
        assert _track_count(port, token[1]) == 5000
        database = _children(process.pid)
        assert database, "the embedded database runs as a child process"
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0, log.read_text()
    for pid in database:
        with pytest.raises(ProcessLookupError):
            for _ in range(50):
                os.kill(pid, 0)
                time.sleep(0.1)

    log.write_text("")
    process = _start_serve(data_dir, port, log)
    try:
        _wait_ready(process, port, log, timeout=60)
        assert "Seeded" not in log.read_text()
        assert _track_count(port, token[1]) == 5000
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0, log.read_text()
