"""Batched writes: every valid item is stored, every invalid one is reported by index."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from tunelytics.domain.errors import InvalidItem, UnknownReference

In = TypeVar("In")
Out = TypeVar("Out")


@dataclass(frozen=True, slots=True)
class Rejection:
    index: int
    field: str | None
    reason: str
    unknown_reference: bool = False


@dataclass(slots=True)
class BatchResult(Generic[Out]):
    stored: list[Out] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)


def sort_out(
    items: Sequence[In], build: Callable[[In], Out], key: Callable[[Out], str] | None = None
) -> tuple[list[tuple[int, Out]], list[Rejection]]:
    """Validate each item; a repeated key within one batch is rejected after its first use."""
    accepted: list[tuple[int, Out]] = []
    rejected: list[Rejection] = []
    seen: set[str] = set()
    for index, item in enumerate(items):
        try:
            built = build(item)
        except InvalidItem as error:
            rejected.append(
                Rejection(index, error.field, error.reason, isinstance(error, UnknownReference))
            )
            continue
        if key is not None:
            k = key(built)
            if k in seen:
                rejected.append(Rejection(index, "id", f"{k} appears earlier in this batch"))
                continue
            seen.add(k)
        accepted.append((index, built))
    return accepted, rejected
