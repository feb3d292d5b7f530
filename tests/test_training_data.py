"""storage/training_data.py against the real wire server: the paged, bounded read of a
tenant's history returns exactly the tenant's listens of the window, each once, however
small the pages, and the cap bounds it."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from tunelytics.domain.demo import DemoSize
from tunelytics.domain.models import ModelKind
from tunelytics.seeding import seed_demo
from tunelytics.services.trainers import TRAINERS
from tunelytics.storage import Storage, training_data
from tunelytics.storage.scope import document_key
from tunelytics.storage.training_data import read_recommender_data

SIZE = DemoSize(artists=4, tracks=30, listeners=40, listens=1_500, days=30)


async def test_pages_read_each_listen_of_the_window_once(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pages far smaller than the data, so every listener range and track page is a boundary.
    monkeypatch.setattr(training_data, "PAGE", 7)
    slug, other = (f"t-{uuid.uuid4().hex[:10]}" for _ in range(2))
    demo = await seed_demo(storage, slug, name=slug, size=SIZE, seed=3)
    await seed_demo(storage, other, name=other, size=SIZE, seed=4)  # never read
    now = datetime.now(UTC)
    since = now - timedelta(days=12)

    data = await read_recommender_data(storage, slug, days=12, now=now)

    expected = Counter(
        (listen.listener_id, listen.track_id, round(listen.played_at.timestamp(), 3))
        for listen in demo.listens
        if listen.played_at >= since
    )
    history = data.history
    assert history.played_at is not None
    read = Counter(
        zip(
            history.listener_ids.tolist(),
            history.track_ids.tolist(),
            [round(t, 3) for t in history.played_at.tolist()],
            strict=True,
        )
    )
    assert 0 < sum(expected.values()) < len(demo.listens)  # the window cuts the history
    assert read == expected
    assert sorted(data.catalogue.track_ids.tolist()) == sorted(t.id for t in demo.tracks)
    assert data.window.items == sum(expected.values())


async def test_the_cap_bounds_the_read(storage: Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(training_data, "PAGE", 11)
    slug = f"t-{uuid.uuid4().hex[:10]}"
    demo = await seed_demo(storage, slug, name=slug, size=SIZE, seed=5)
    data = await read_recommender_data(storage, slug, max_listens=100)
    assert len(data.history.listener_ids) == data.window.items == 100
    # What is read is the tenant's own: a subset of its listens.
    mine = Counter((listen.listener_id, listen.track_id) for listen in demo.listens)
    read = Counter(
        zip(data.history.listener_ids.tolist(), data.history.track_ids.tolist(), strict=True)
    )
    assert not read - mine


async def test_the_read_carries_the_tenants_follows_only(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(training_data, "PAGE", 7)
    slug, other = (f"t-{uuid.uuid4().hex[:10]}" for _ in range(2))
    demo = await seed_demo(storage, slug, name=slug, size=SIZE, seed=3)
    other_demo = await seed_demo(storage, other, name=other, size=SIZE, seed=4)
    # A document from before listeners had follows reads as following nobody.
    quiet = demo.listeners[0]
    await storage.db["listeners"].update_one(
        {"_id": document_key(slug, quiet.id)}, {"$unset": {"follows": ""}}
    )

    data = await read_recommender_data(storage, slug)

    assert data.following is not None
    read = Counter(
        zip(
            data.following.follower_ids.tolist(),
            data.following.followed_ids.tolist(),
            strict=True,
        )
    )
    mine = Counter((li.id, f) for li in demo.listeners[1:] for f in li.follows)
    theirs = Counter((li.id, f) for li in other_demo.listeners for f in li.follows)
    assert read == mine and read != theirs  # the same IDs in both tenants, other pairs
    # The recommender's trainer hands them on: its model has a following view.
    model = TRAINERS[ModelKind.RECOMMENDER].fit(data, {"factors": 8}, lambda _f, _m: None)
    assert "following" in model.blend_weights
    # Nobody follows anybody: no following view at all.
    await storage.db["listeners"].update_many({"tenant_id": slug}, {"$set": {"follows": []}})
    data = await read_recommender_data(storage, slug)
    assert data.following is None
    model = TRAINERS[ModelKind.RECOMMENDER].fit(data, {"factors": 8}, lambda _f, _m: None)
    assert "following" not in model.blend_weights
