"""`tunelytics replay`: stream a CSV of (timestamp, value) rows, such as a NAB file, into
a tenant through the ingestMetrics mutation, at a chosen speed, to watch alerts arrive.

Time is compressed by `speed`: the row at original time t is sent at
start + (t - t0) / speed of wall time, stamped with that wall time, so every point is
"live" (never in the future, never out of retention) and the detector sees the series'
shape at the replay's pace. Points due together go in one batch (every `tick_s`).
"""

from __future__ import annotations

import asyncio
import csv
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

INGEST = """mutation($points: [MetricPointInput!]!) { ingestMetrics(points: $points) {
  stored series { score } rejected { index reason message } } }"""


def read_rows(path: Path) -> list[tuple[float, float]]:
    """(epoch seconds, value) of each row with a parseable timestamp and value; a header
    row is skipped. Timestamps are ISO 8601 or `YYYY-MM-DD HH:MM:SS` (taken as UTC)."""
    rows: list[tuple[float, float]] = []
    with path.open(newline="") as handle:
        for record in csv.reader(handle):
            if len(record) < 2:
                continue
            try:
                at = datetime.fromisoformat(record[0].strip())
                value = float(record[1])
            except ValueError:
                continue
            at = at.replace(tzinfo=UTC) if at.tzinfo is None else at
            rows.append((at.timestamp(), value))
    rows.sort(key=lambda row: row[0])
    return rows


def schedule(rows: list[tuple[float, float]], speed: float) -> list[tuple[float, float]]:
    """(seconds after the start to send, value) of each row."""
    if not rows:
        return []
    first = rows[0][0]
    return [((at - first) / speed, value) for at, value in rows]


async def replay(
    url: str,
    token: str,
    rows: list[tuple[float, float]],
    series: str,
    labels: dict[str, str],
    speed: float,
    progress: Callable[[int, dict[str, Any]], None],
    tick_s: float = 0.2,
    max_batch: int = 1_000,
) -> tuple[int, int]:
    """Send the rows; returns (stored, rejected)."""
    plan = schedule(rows, speed)
    label_list = [{"name": k, "value": v} for k, v in labels.items()]
    stored = rejected = 0
    started = time.monotonic()
    last_ms = 0
    position = 0
    async with httpx.AsyncClient(timeout=30) as client:
        while position < len(plan):
            elapsed = time.monotonic() - started
            due = [v for offset, v in plan[position : position + max_batch] if offset <= elapsed]
            if not due:
                await asyncio.sleep(min(tick_s, plan[position][0] - elapsed))
                continue
            now_ms = int(time.time() * 1000)
            points: list[dict[str, Any]] = []
            for value in due:
                # Strictly increasing times: rows due together get consecutive milliseconds.
                last_ms = max(last_ms + 1, now_ms - len(due) + len(points))
                points.append(
                    {
                        "series": series,
                        "labels": label_list,
                        "timestamp": datetime.fromtimestamp(last_ms / 1000, UTC).isoformat(),
                        "value": value,
                    }
                )
            response = await client.post(
                url,
                json={"query": INGEST, "variables": {"points": points}},
                headers={"authorization": f"Bearer {token}"},
            )
            body = response.json()
            if body.get("errors"):
                raise RuntimeError(body["errors"][0]["message"])
            payload = body["data"]["ingestMetrics"]
            stored += payload["stored"]
            rejected += len(payload["rejected"])
            position += len(due)
            progress(len(due), payload)
    return stored, rejected


def parse_labels(pairs: Iterable[str]) -> dict[str, str]:
    labels = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ValueError(f"a label is name=value, not {pair!r}")
        labels[name] = value
    return labels
