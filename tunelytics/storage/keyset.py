"""Keyset pagination over any collection: sort by one field, tie-break on `id` ascending.

The page after a position is read as two conjunctive queries, the rest of the ties and
then the values beyond, rather than one `$or`: both are index range scans on MongoDB, and
the embedded server scans the whole collection for any `$or` (docs/mongodb-compat.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.collection import AsyncCollection

from tunelytics.domain.paging import Order, Page, Position
from tunelytics.storage.scope import API_FIELDS

T = TypeVar("T")
Document = dict[str, Any]


def with_condition(query: Document, field: str, condition: Document) -> Document:
    """`query` and `{field: condition}`, merged into one filter document where possible."""
    existing = query.get(field)
    if existing is None:
        return {**query, field: condition}
    if (
        isinstance(existing, dict)
        and all(key.startswith("$") for key in existing)
        and not existing.keys() & condition.keys()
    ):
        return {**query, field: {**existing, **condition}}
    return {"$and": [query, {field: condition}]}


async def keyset_page(
    collection: AsyncCollection[Document],
    query: Document,
    order: Order,
    after: Position | None,
    first: int,
    to_item: Callable[[Document], T],
) -> Page[T]:
    async def find(where: Document, sort: list[tuple[str, int]], limit: int) -> list[Document]:
        return await collection.find(where, API_FIELDS).sort(sort).limit(limit).to_list()

    by_id = [("id", ASCENDING)]
    if order.field == "id":
        where = query if after is None else with_condition(query, "id", {"$gt": after[1]})
        docs = await find(where, by_id, first + 1)
    else:
        sort = [(order.field, DESCENDING if order.descending else ASCENDING), *by_id]
        docs = []
        if after is None:
            beyond: Document = {}
        else:
            value, item_id = after
            ties = with_condition(query, order.field, {"$eq": value})
            docs = await find(with_condition(ties, "id", {"$gt": item_id}), by_id, first + 1)
            beyond = {"$lt" if order.descending else "$gt": value}
        if len(docs) <= first:
            rest = with_condition(query, order.field, beyond) if beyond else query
            docs += await find(rest, sort, first + 1 - len(docs))
    page = docs[:first]
    return Page(
        items=[to_item(doc) for doc in page],
        positions=[(doc.get(order.field), doc["id"]) for doc in page],
        has_next=len(docs) > first,
    )
