"""Resolver functions, per-request DataLoaders, auth checks and error mapping."""
