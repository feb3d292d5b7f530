"""tunelytics: a multi-tenant GraphQL API for music-streaming analytics."""

__version__ = "0.1.0"
