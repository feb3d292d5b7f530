"""Keyset pages: stable under inserts, cheap at any depth (no skip/offset)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")

# (value of the sort field, id): the position of an item in a keyset order.
Position = tuple[Any, str]


@dataclass(frozen=True, slots=True)
class Order:
    field: str
    descending: bool = False


@dataclass(slots=True)
class Page(Generic[T]):
    items: list[T]
    positions: list[Position]
    has_next: bool
