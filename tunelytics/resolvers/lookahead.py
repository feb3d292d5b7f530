"""What the client asked for below the current field, to load it ahead in one batch."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from strawberry.types.nodes import Selection


def selects(info: Any, *path: str) -> bool:
    """Whether the selection below the current field follows `path` (through fragments),
    e.g. selects(info, "edges", "node", "artist")."""
    # selected_fields holds the current field itself (once per place it is selected).
    return any(_follows(field.selections, path) for field in info.selected_fields)


def _follows(selections: Iterable[Selection], path: tuple[str, ...]) -> bool:
    if not path:
        return True
    for selection in selections:
        name = getattr(selection, "name", None)
        children = getattr(selection, "selections", ())
        if name is None:  # a fragment: its fields stand at this level
            if _follows(children, path):
                return True
        elif name == path[0] and _follows(children, path[1:]):
            return True
    return False
