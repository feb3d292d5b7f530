"""Per-operation metrics: count and time every GraphQL operation by type and outcome."""

from __future__ import annotations

import time
from collections.abc import Iterator

from strawberry.extensions import SchemaExtension

from tunelytics import metrics


class OperationMetrics(SchemaExtension):
    def on_operation(self) -> Iterator[None]:
        started = time.perf_counter()
        yield
        context = self.execution_context
        try:
            kind = context.operation_type.value
        except RuntimeError:
            kind = "unknown"  # the document did not parse
        result = context.result
        failed = bool((result is not None and result.errors) or context.pre_execution_errors)
        metrics.GRAPHQL_OPERATIONS.labels(kind, "error" if failed else "ok").inc()
        if kind != "subscription":
            metrics.GRAPHQL_LATENCY.labels(kind).observe(time.perf_counter() - started)
