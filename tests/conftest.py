from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest

from tests.helpers import Api, ApiServer, token
from tunelytics.domain.auth import Role
from tunelytics.domain.demo import Demo, DemoSize
from tunelytics.seeding import seed_demo
from tunelytics.storage import Storage, connect
from tunelytics.storage.embedded import EmbeddedMongo

SMALL = DemoSize(artists=6, tracks=40, listeners=10, listens=300, days=20)


@pytest.fixture(scope="session")
def mongo_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real MongoDB when MONGODB_URL is set, else the embedded MongoDB-wire server."""
    if url := os.environ.get("MONGODB_URL"):
        yield url
        return
    with EmbeddedMongo(tmp_path_factory.mktemp("mongo")) as mongo:
        yield mongo.url


@pytest.fixture(scope="session")
def database_name() -> str:
    return f"test_{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def server(
    mongo_url: str, database_name: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiServer]:
    env = {"MONGODB_URL": mongo_url, "MONGODB_DATABASE": database_name, "REDIS_URL": ""}
    api = ApiServer(env, tmp_path_factory.mktemp("server") / "server.log").start()
    yield api
    api.stop()


@pytest.fixture(scope="session")
async def storage(mongo_url: str, database_name: str) -> AsyncIterator[Storage]:
    store = connect(mongo_url, database_name)
    await store.ensure_indexes()
    yield store
    await store.close()


@pytest.fixture
async def api(server: ApiServer) -> AsyncIterator[Api]:
    client = Api(server.graphql_url)
    yield client
    await client.client.aclose()


@dataclass
class SeededTenant:
    id: str
    demo: Demo

    def token(self, *roles: Role | str) -> str:
        return token(self.id, *roles)

    @property
    def admin(self) -> str:
        return token(self.id, Role.ADMIN)

    @property
    def viewer(self) -> str:
        return token(self.id, Role.VIEWER)


async def make_tenant(storage: Storage, seed: int = 1) -> SeededTenant:
    slug = f"t-{uuid.uuid4().hex[:10]}"
    demo = await seed_demo(storage, slug, name=f"Tenant {slug}", size=SMALL, seed=seed)
    return SeededTenant(slug, demo)


@pytest.fixture
async def tenant(storage: Storage) -> SeededTenant:
    return await make_tenant(storage, seed=1)


@pytest.fixture
async def other_tenant(storage: Storage) -> SeededTenant:
    """Seeded from another seed: the same IDs as `tenant`, different content."""
    return await make_tenant(storage, seed=2)
