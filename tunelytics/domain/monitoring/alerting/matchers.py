"""Label matchers and series selectors, with Prometheus semantics.

A matcher compares one label with `=`, `!=`, `=~` or `!~`; regular expressions are fully
anchored and a missing label reads as the empty string, as in Prometheus. A selector is an
optional series name plus matchers, written `api_latency{service=~"api|web", region!="eu"}`.

>>> s = Selector.parse('api_latency{service=~"api|web", region!="eu"}')
>>> s.matches("api_latency", {"service": "api", "region": "us"})
True
>>> s.matches("api_latency", {"service": "apis"}), s.matches("cpu", {"service": "api"})
(False, False)
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

OPS = ("=", "!=", "=~", "!~")
LABEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
SERIES_NAME = re.compile(r"[A-Za-z_:][A-Za-z0-9_:.\-/]*\Z")
_SELECTOR = re.compile(r"\s*([A-Za-z_:][A-Za-z0-9_:.\-/]*)?\s*(?:\{(.*)\})?\s*\Z", re.S)
_MATCHER = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*(,|\Z)')


class MatcherError(ValueError):
    """A matcher or selector that cannot be parsed or compiled."""


@dataclass(frozen=True, slots=True)
class Matcher:
    label: str
    op: str
    value: str
    _regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def of(cls, label: str, op: str, value: str) -> Matcher:
        """A checked, compiled matcher; raises MatcherError on a bad name, op or regex."""
        if not isinstance(label, str) or not LABEL_NAME.match(label):
            raise MatcherError(f"label name {label!r} is not a valid label name")
        if op not in OPS:
            raise MatcherError(f"operator {op!r} is not one of {', '.join(OPS)}")
        if not isinstance(value, str):
            raise MatcherError("matcher value must be a string")
        regex = None
        if op in ("=~", "!~"):
            if len(value) > 1000:
                raise MatcherError("regular expression is longer than 1000 characters")
            try:
                regex = re.compile(f"(?:{value})\\Z")
            except re.error as error:
                raise MatcherError(f"invalid regular expression {value!r}: {error}") from None
        return cls(label, op, value, regex)

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.label, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        assert self._regex is not None
        found = self._regex.match(actual) is not None
        return found if self.op == "=~" else not found

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"')
        return f'{self.label}{self.op}"{escaped}"'

    def to_document(self) -> dict[str, str]:
        return {"label": self.label, "op": self.op, "value": self.value}

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> Matcher:
        return cls.of(doc["label"], doc["op"], doc["value"])


def parse_matchers(raw: str | Sequence[Any]) -> tuple[Matcher, ...]:
    """Matchers from `a="x", b=~"y"` text or a list of {label, op, value} mappings."""
    if isinstance(raw, str):
        text = raw.strip()
        if text.startswith("{") and text.endswith("}"):
            text = text[1:-1]
        return _parse_matcher_text(text)
    if not isinstance(raw, Sequence):
        raise MatcherError("matchers must be a string or a list of {label, op, value}")
    out = []
    for item in raw:
        if isinstance(item, Matcher):
            out.append(item)
        elif isinstance(item, Mapping):
            out.append(Matcher.of(item.get("label"), item.get("op", "="), item.get("value")))  # type: ignore[arg-type]
        else:
            raise MatcherError("each matcher must be a {label, op, value} mapping")
    return tuple(out)


def _parse_matcher_text(text: str) -> tuple[Matcher, ...]:
    out: list[Matcher] = []
    pos = 0
    while pos < len(text) and text[pos:].strip():
        m = _MATCHER.match(text, pos)
        if m is None:
            raise MatcherError(f"cannot parse matchers at {text[pos : pos + 30]!r}")
        value = re.sub(r"\\(.)", r"\1", m.group(3))
        out.append(Matcher.of(m.group(1), m.group(2), value))
        pos = m.end()
        if m.group(4) == "" and pos < len(text) and text[pos:].strip():
            raise MatcherError(f"expected ',' at {text[pos : pos + 30]!r}")
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Selector:
    """Series name (None: any name) and label matchers, all of which must match."""

    name: str | None = None
    matchers: tuple[Matcher, ...] = ()

    @classmethod
    def parse(cls, raw: str | Mapping[str, Any] | Selector) -> Selector:
        if isinstance(raw, Selector):
            return raw
        if isinstance(raw, Mapping):
            name = raw.get("name") or None
            if name is not None and (not isinstance(name, str) or not SERIES_NAME.match(name)):
                raise MatcherError(f"series name {name!r} is not a valid series name")
            return cls(name, parse_matchers(raw.get("matchers") or ()))
        if not isinstance(raw, str):
            raise MatcherError('selector must be a string like name{label="value"}')
        m = _SELECTOR.match(raw)
        if m is None or (m.group(1) is None and m.group(2) is None):
            raise MatcherError(f"cannot parse selector {raw!r}")
        return cls(m.group(1), _parse_matcher_text(m.group(2) or ""))

    def matches(self, name: str, labels: Mapping[str, str]) -> bool:
        if self.name is not None and name != self.name:
            return False
        return all(m.matches(labels) for m in self.matchers)

    def __str__(self) -> str:
        inner = ", ".join(str(m) for m in self.matchers)
        return f"{self.name or ''}{{{inner}}}" if inner or not self.name else self.name

    def to_document(self) -> dict[str, Any]:
        return {"name": self.name, "matchers": [m.to_document() for m in self.matchers]}

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> Selector:
        return cls.parse(doc)


def all_match(matchers: Sequence[Matcher], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)
