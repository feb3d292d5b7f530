"""A subscription's expiry marker comes once the token has expired by the wall clock,
never before, even when the event loop's timer fires early."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tunelytics.domain.auth import Principal, Role
from tunelytics.resolvers import expiry
from tunelytics.resolvers.errors import Unauthenticated
from tunelytics.resolvers.expiry import TOKEN_EXPIRED, check_token, ends_with_token


def principal(expires_at: datetime | None) -> Principal:
    return Principal(tenant_id="t1", subject="s", roles=frozenset({Role.VIEWER}),
                     expires_at=expires_at)  # fmt: skip


async def test_the_marker_waits_for_the_wall_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    expires_at = datetime.now(UTC) + timedelta(seconds=0.2)
    skew = [timedelta(seconds=0.15)]  # the clock reads 0.15 s ahead when the timer is set

    class SkewedClock:
        @staticmethod
        def now(tz: Any = None) -> datetime:
            return datetime.now(tz) + skew[0]

    monkeypatch.setattr(expiry, "datetime", SkewedClock)
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=4)
    with ends_with_token(principal(expires_at), queue):
        skew[0] = timedelta(0)  # so the timer fires 0.15 s early: it must wait on
        marker = await asyncio.wait_for(queue.get(), 2.0)
        assert datetime.now(UTC) >= expires_at
    assert marker is TOKEN_EXPIRED
    with pytest.raises(Unauthenticated):
        check_token(marker)


async def test_no_expiry_no_marker_and_the_timer_ends_with_the_block() -> None:
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=1)
    with ends_with_token(principal(None), queue):
        await asyncio.sleep(0.02)
    with ends_with_token(principal(datetime.now(UTC) + timedelta(seconds=0.05)), queue):
        queue.put_nowait({"n": 1})  # events pass until the token expires
        assert await asyncio.wait_for(queue.get(), 1.0) == {"n": 1}
    await asyncio.sleep(0.1)  # left the block before expiry: no marker afterwards
    assert queue.empty()
    check_token({"n": 2})  # an ordinary event passes
