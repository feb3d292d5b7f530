"""The GraphQL schema: Strawberry types whose fields call resolvers."""

from tunelytics.schema.root import build_schema

__all__ = ["build_schema"]
