"""Opaque cursors and page-size checks for Relay-style connections."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any

from tunelytics.domain.paging import Position
from tunelytics.resolvers.errors import BadUserInput


def _plain(value: Any) -> Any:
    return {"$dt": value.isoformat()} if isinstance(value, datetime) else value


def _typed(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"$dt"}:
        return datetime.fromisoformat(value["$dt"])
    return value


def encode_cursor(order: str, position: Position) -> str:
    raw = json.dumps([order, _plain(position[0]), position[1]], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None, order: str) -> Position | None:
    """The position a cursor stands for; it must come from a list in the same order."""
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        cursor_order, value, item_id = json.loads(raw)
        if not isinstance(item_id, str) or not isinstance(value, str | int | float | dict | None):
            raise ValueError("bad cursor shape")
        value = _typed(value)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise BadUserInput("after: not a cursor this API issued") from None
    if cursor_order != order:
        raise BadUserInput(f"after: the cursor belongs to a list ordered by {cursor_order}")
    return value, item_id


def check_first(first: int, maximum: int) -> int:
    if not 1 <= first <= maximum:
        raise BadUserInput(f"first must be between 1 and {maximum}", argument="first")
    return first


def check_batch(size: int, maximum: int) -> None:
    if size > maximum:
        raise BadUserInput(f"a batch may hold at most {maximum} items; this one has {size}")
