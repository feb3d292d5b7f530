"""The DateTime scalar parses exactly like Strawberry's built-in one (dateutil's
isoparse): the same values, the same tzinfo, the same errors."""

from __future__ import annotations

import random
from typing import Any

from strawberry.schema.types.base_scalars import DateTimeDefinition

from tunelytics.schema.scalars import DATETIME


def outcome(parse: Any, text: str) -> tuple[Any, ...]:
    try:
        moment = parse(text)
    except Exception as error:
        return ("error", type(error).__name__, str(error))
    return ("value", moment, type(moment.tzinfo), repr(moment.tzinfo))


def test_datetime_inputs_parse_as_the_builtin_scalar_does() -> None:
    rng = random.Random(7)

    def two(low: int, high: int) -> str:
        return f"{rng.randint(low, high):02d}"

    texts = [
        "2026-12-04T19:13:12Z",
        "2026-12-04T19:13:12.123456+00:00",
        "2026-12-04T19:13:12.5-00:00",
        "2026-12-04T19:13:12+05:30",
        "2026-12-04T19:13:12-23:59",
        "2026-12-04T19:13:12+24:00",
        "2026-12-04T19:13:12+05:60",
        "2026-12-04T24:00:00",
        "2026-02-30T10:00:00Z",
        "2026-12-04T19:13:60Z",
        "2026-12-04T19:13:12.1234567Z",
        "2026-12-04 19:13:12",
        "2026-12-04T19:13:12z",
        "2026-12-04T19:13",
        "2026-12-04",
        "20261204T191312Z",
        "2026-W49-5T10:00:00",
        "not a date",
        "",
        42,
    ]
    for _ in range(20_000):
        date = f"{rng.randint(0, 9999):04d}-{two(0, 13)}-{two(0, 32)}"
        text = f"{date}T{two(0, 25)}:{two(0, 61)}:{two(0, 61)}"
        if rng.random() < 0.5:
            text += "." + "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 7)))
        kind = rng.random()
        if kind < 0.3:
            text += "Z"
        elif kind < 0.8:
            text += rng.choice("+-") + two(0, 25) + ":" + two(0, 61)
        texts.append(text)
    for text in texts:
        assert outcome(DATETIME.parse_value, text) == outcome(
            DateTimeDefinition.parse_value, text
        ), text
