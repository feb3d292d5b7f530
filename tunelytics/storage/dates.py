"""Dates read back from the database.

MongoDB returns every stored date as a date. nx-27017 returns a date written by `$set`
(or `$min`/`$max`) on an existing document as text, "2024-05-06 07:08:09.123000", in
UTC without a zone (docs/mongodb-compat.md p). The product writes its own timestamps
with `$currentDate`, a date on both, but dates a caller gives (a track's release date on
an update) and documents written before that still come back as text there: fields that
can hold one are read through `stored_datetime`.
"""

from __future__ import annotations

from datetime import UTC, datetime


def stored_datetime(value: object) -> datetime | None:
    """A stored date as an aware UTC datetime; None for a missing one."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        parsed = datetime.fromisoformat(value)
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    raise TypeError(f"not a stored date: {value!r}")
