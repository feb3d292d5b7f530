"""Errors the domain raises; the API layer maps them to GraphQL error codes."""

from __future__ import annotations


class InvalidItem(ValueError):
    """One item of a batch breaks a rule. The rest of the batch is unaffected."""

    def __init__(self, field: str | None, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


class UnknownReference(InvalidItem):
    """An item names a track, artist or listener that the tenant does not have."""
