"""The README's GraphQL examples are valid against the schema the server builds."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from graphql import parse, validate

from tunelytics.config import Limits
from tunelytics.schema.root import build_schema

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
# Fenced ```graphql blocks, and inline `{ ... }` / `subscription { ... }` examples.
EXAMPLES = re.findall(r"```graphql\n(.*?)```", README, re.S) + [
    example
    for example in re.findall(r"`((?:subscription )?\{ [^`]*\})`", README)
    if "..." not in example
]


def test_the_readme_has_examples() -> None:
    assert len(EXAMPLES) >= 5


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: " ".join(e.split())[:40])
def test_readme_example_validates(example: str) -> None:
    schema = build_schema(Limits())._schema
    errors = validate(schema, parse(example))
    assert not errors, [e.message for e in errors]
