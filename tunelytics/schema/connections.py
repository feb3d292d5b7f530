"""Relay-style connections built from keyset pages."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import strawberry

from tunelytics.domain.paging import Page, Position
from tunelytics.resolvers.pagination import encode_cursor

Node = TypeVar("Node")
Item = TypeVar("Item")


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


@strawberry.type
class Edge(Generic[Node]):
    node: Node
    order: strawberry.Private[str]
    position: strawberry.Private[Position]

    @strawberry.field(description="Pass as `after` to read on from this edge.")
    def cursor(self) -> str:
        # Encoded only when asked for: many clients read pageInfo.endCursor alone.
        return encode_cursor(self.order, self.position)


@strawberry.type
class Connection(Generic[Node]):
    edges: list[Edge[Node]]
    page_info: PageInfo
    counter: strawberry.Private[Callable[[], Awaitable[int]] | None] = None

    @strawberry.field(description="All items matching the filter; costs a count query.")
    async def total_count(self) -> int | None:
        return await self.counter() if self.counter else None

    @strawberry.field(description="The nodes alone, for clients that need no cursors.")
    def nodes(self) -> list[Node]:
        return [edge.node for edge in self.edges]


def connection(
    page: Page[Item],
    order: str,
    to_node: Callable[[Item], Node],
    has_previous: bool,
    counter: Callable[[], Awaitable[int]] | None = None,
) -> Connection[Node]:
    edges = [
        Edge(node=to_node(item), order=order, position=position)
        for item, position in zip(page.items, page.positions, strict=True)
    ]
    return Connection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=page.has_next,
            has_previous_page=has_previous,
            start_cursor=edges[0].cursor() if edges else None,
            end_cursor=edges[-1].cursor() if edges else None,
        ),
        counter=counter,
    )
