"""Prometheus metrics: requests, latency, errors, live subscriptions."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUESTS = Counter(
    "tunelytics_http_requests_total", "HTTP requests", ["method", "path", "status"]
)
HTTP_LATENCY = Histogram(
    "tunelytics_http_request_duration_seconds",
    "HTTP request latency",
    ["method", "path"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
GRAPHQL_OPERATIONS = Counter(
    "tunelytics_graphql_operations_total", "GraphQL operations", ["type", "outcome"]
)
GRAPHQL_ERRORS = Counter("tunelytics_graphql_errors_total", "GraphQL errors by code", ["code"])
GRAPHQL_LATENCY = Histogram(
    "tunelytics_graphql_operation_duration_seconds",
    "GraphQL operation latency",
    ["type"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
ACTIVE_SUBSCRIPTIONS = Gauge(
    "tunelytics_active_subscriptions", "Live GraphQL subscriptions", ["field"]
)
EVENTS_PUBLISHED = Counter("tunelytics_events_published_total", "Events published", ["kind"])
EVENTS_DROPPED = Counter(
    "tunelytics_events_dropped_total", "Events dropped for subscribers that fell behind"
)
