"""Keyset pagination over any collection: sort by one field, tie-break on `id`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.collection import AsyncCollection

from tunelytics.domain.paging import Order, Page, Position

T = TypeVar("T")
Document = dict[str, Any]


def after_position(order: Order, after: Position | None) -> Document:
    """The filter for items strictly after `after` in `order` (ties broken by id ascending)."""
    if after is None:
        return {}
    value, item_id = after
    if order.field == "id":
        return {"id": {"$gt": item_id}}
    beyond = "$lt" if order.descending else "$gt"
    return {
        "$or": [
            {order.field: {beyond: value}},
            {order.field: value, "id": {"$gt": item_id}},
        ]
    }


async def keyset_page(
    collection: AsyncCollection[Document],
    query: Document,
    order: Order,
    after: Position | None,
    first: int,
    to_item: Callable[[Document], T],
) -> Page[T]:
    condition = after_position(order, after)
    full = {"$and": [query, condition]} if condition else query
    sort = [(order.field, DESCENDING if order.descending else ASCENDING)]
    if order.field != "id":
        sort.append(("id", ASCENDING))
    docs = await collection.find(full).sort(sort).limit(first + 1).to_list()
    docs_page = docs[:first]
    return Page(
        items=[to_item(doc) for doc in docs_page],
        positions=[(doc.get(order.field), doc["id"]) for doc in docs_page],
        has_next=len(docs) > first,
    )
