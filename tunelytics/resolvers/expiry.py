"""A subscription ends when its token does: one timer per subscription (not a timeout
per event) puts a marker in its event queue once the token has expired, and the stream
raises UNAUTHENTICATED when it reads it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from tunelytics.domain.auth import Principal
from tunelytics.resolvers.errors import Unauthenticated

TOKEN_EXPIRED: dict[str, Any] = {"marker": "token expired"}


def put_newest(queue: asyncio.Queue[dict[str, Any]], message: dict[str, Any]) -> None:
    """Queue `message`, dropping the oldest event if the queue is full."""
    if queue.full():
        queue.get_nowait()
    queue.put_nowait(message)


@contextlib.contextmanager
def ends_with_token(principal: Principal, queue: asyncio.Queue[dict[str, Any]]) -> Iterator[None]:
    """While inside, TOKEN_EXPIRED joins `queue` when the principal's token expires."""
    expires_at = principal.expires_at
    if expires_at is None:
        yield
        return
    loop = asyncio.get_running_loop()
    handle: asyncio.TimerHandle | None = None

    def fire() -> None:
        nonlocal handle
        left = (expires_at - datetime.now(UTC)).total_seconds()
        if left > 0:  # the loop's monotonic clock ran ahead of the wall clock
            handle = loop.call_later(left, fire)
            return
        put_newest(queue, TOKEN_EXPIRED)

    handle = loop.call_later(max((expires_at - datetime.now(UTC)).total_seconds(), 0.0), fire)
    try:
        yield
    finally:
        handle.cancel()


def check_token(event: dict[str, Any]) -> None:
    """Raise UNAUTHENTICATED for the expiry marker."""
    if event is TOKEN_EXPIRED:
        raise Unauthenticated("token has expired; reconnect with a fresh one")
