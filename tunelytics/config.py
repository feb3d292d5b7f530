"""Settings from environment variables, read in one place."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

DEV_SECRET = "tunelytics-development-secret-change-me"


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _read_key(value_var: str, file_var: str) -> str | None:
    if value := os.environ.get(value_var):
        return value
    if path := os.environ.get(file_var):
        return Path(path).read_text()
    return None


@dataclass(frozen=True)
class Limits:
    max_depth: int = 12
    max_tokens: int = 2_000
    max_aliases: int = 30
    # Objects one operation may ask for: `first` multiplied down nested lists, summed.
    max_objects: int = 20_000
    max_body_bytes: int = 1_048_576
    # Audio uploads (multipart requests to analyzeAudio) have their own limits.
    max_upload_bytes: int = 64 * 1_048_576
    max_audio_seconds: int = 20 * 60
    max_batch: int = 1_000
    max_page: int = 100
    # Requests per minute per caller (token subject within its tenant, or client address).
    rate_per_minute: int = 6_000


@dataclass(frozen=True)
class Settings:
    mongodb_url: str | None = None
    mongodb_database: str = "tunelytics"
    mongodb_timeout_ms: int = 5_000
    redis_url: str | None = None
    data_dir: Path = field(default_factory=lambda: Path(".tunelytics-data").resolve())
    host: str = "127.0.0.1"
    port: int = 8000
    jwt_algorithm: str = "HS256"
    jwt_secret: str | None = DEV_SECRET
    jwt_public_key: str | None = None
    jwt_private_key: str | None = None
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    log_level: str = "INFO"
    demo_tenant: str = "demo"
    limits: Limits = field(default_factory=Limits)

    @classmethod
    def from_env(cls) -> Settings:
        algorithm = os.environ.get("JWT_ALGORITHM", "HS256").upper()
        if algorithm not in ("HS256", "RS256"):
            raise ValueError("JWT_ALGORITHM must be HS256 or RS256")
        return cls(
            mongodb_url=os.environ.get("MONGODB_URL") or None,
            mongodb_database=os.environ.get("MONGODB_DATABASE", "tunelytics"),
            mongodb_timeout_ms=_int("MONGODB_TIMEOUT_MS", 5_000),
            redis_url=os.environ.get("REDIS_URL") or None,
            data_dir=Path(os.environ.get("TUNELYTICS_DATA_DIR", ".tunelytics-data")).resolve(),
            host=os.environ.get("HOST", "127.0.0.1"),
            port=_int("PORT", 8000),
            jwt_algorithm=algorithm,
            jwt_secret=os.environ.get("JWT_SECRET", DEV_SECRET if algorithm == "HS256" else None),
            jwt_public_key=_read_key("JWT_PUBLIC_KEY", "JWT_PUBLIC_KEY_FILE"),
            jwt_private_key=_read_key("JWT_PRIVATE_KEY", "JWT_PRIVATE_KEY_FILE"),
            jwt_audience=os.environ.get("JWT_AUDIENCE") or None,
            jwt_issuer=os.environ.get("JWT_ISSUER") or None,
            log_level=os.environ.get("LOG_LEVEL", "INFO").upper(),
            demo_tenant=os.environ.get("DEMO_TENANT", "demo"),
            limits=Limits(
                max_depth=_int("MAX_QUERY_DEPTH", Limits.max_depth),
                max_tokens=_int("MAX_QUERY_TOKENS", Limits.max_tokens),
                max_aliases=_int("MAX_QUERY_ALIASES", Limits.max_aliases),
                max_objects=_int("MAX_QUERY_OBJECTS", Limits.max_objects),
                max_body_bytes=_int("MAX_BODY_BYTES", Limits.max_body_bytes),
                max_upload_bytes=_int("MAX_UPLOAD_BYTES", Limits.max_upload_bytes),
                max_audio_seconds=_int("MAX_AUDIO_SECONDS", Limits.max_audio_seconds),
                max_batch=_int("MAX_BATCH_ITEMS", Limits.max_batch),
                max_page=_int("MAX_PAGE_SIZE", Limits.max_page),
                rate_per_minute=_int("RATE_LIMIT_PER_MINUTE", Limits.rate_per_minute),
            ),
        )
