"""GraphQL errors with extensions.code, and the extension that guarantees every error has one.

Errors the API raises on purpose carry their code. Parse, validation and variable errors
(the request itself is wrong) get BAD_USER_INPUT. Anything else is a bug or an outage: the
client sees "Internal server error" with INTERNAL, the server log gets the traceback.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from graphql import GraphQLError

from tunelytics import metrics

log = logging.getLogger("tunelytics.errors")


class ApiError(Exception):
    code: ClassVar[str] = "INTERNAL"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.extensions: dict[str, Any] = {"code": self.code, **details}


class Unauthenticated(ApiError):
    code = "UNAUTHENTICATED"


class Forbidden(ApiError):
    code = "FORBIDDEN"


class NotFound(ApiError):
    code = "NOT_FOUND"


class BadUserInput(ApiError):
    code = "BAD_USER_INPUT"


class RateLimited(ApiError):
    code = "RATE_LIMITED"


class ModelNotReady(ApiError):
    """No trained model can serve this yet: none trained, still training, failed, none active."""

    code = "MODEL_NOT_READY"


def _coded(error: GraphQLError) -> GraphQLError:
    original = error.original_error
    if isinstance(original, ApiError):
        return error
    if (
        original is None
        or isinstance(original, GraphQLError)
        or (error.path is None and isinstance(original, ValueError | TypeError))
    ):
        # Syntax, validation, depth/token/alias limits, variables that do not coerce to
        # their types (outside any resolver, so no path): the request itself is wrong.
        error.extensions = {**(error.extensions or {}), "code": "BAD_USER_INPUT"}
        return error
    log.error(
        "unhandled error in a resolver",
        exc_info=(type(original), original, original.__traceback__),
        extra={"path": error.path},
    )
    return GraphQLError(
        "Internal server error",
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        extensions={"code": "INTERNAL"},
    )


def coded_errors(errors: list[GraphQLError]) -> list[GraphQLError]:
    result = [_coded(error) for error in errors]
    for error in result:
        metrics.GRAPHQL_ERRORS.labels((error.extensions or {}).get("code", "INTERNAL")).inc()
    return result


def code_errors_in_place(errors: list[GraphQLError]) -> None:
    """Strawberry passes every error list of every operation through Schema.process_errors
    (parse, validation, execution, subscription events); ours calls this there."""
    errors[:] = coded_errors(errors)
