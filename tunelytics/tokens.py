"""JSON Web Tokens: verify callers' tokens, mint development tokens.

HS256 with a shared secret or RS256 with a public key, from configuration. The accepted
algorithm is fixed by configuration, never taken from the token, so `alg: none` and
algorithm-confusion tokens are refused.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from tunelytics.config import Settings
from tunelytics.domain.auth import Principal, Role
from tunelytics.domain.tenancy import check_slug

# Verified tokens a verifier keeps (the oldest goes first beyond this).
KEPT_TOKENS = 4_096


class InvalidToken(Exception):
    """The token is missing a claim, expired, badly signed or malformed."""


@dataclass(frozen=True, slots=True)
class _Verified:
    principal: Principal
    # The seconds between which PyJWT accepts the token: from its iat and nbf (refused
    # while either is after now) until its exp (refused once exp <= now).
    valid_from: float
    valid_until: int

    def valid(self, now: float) -> bool:
        return self.valid_from <= now < self.valid_until


class TokenVerifier:
    """Verifies bearer tokens; a token it has verified is answered from memory while the
    clock is inside the window in which verifying it again would accept it.

    A client sends the same token with every request, and PyJWT's work on it (the signature,
    the key checks, the claims) was 7-10% of a read's server CPU (docs/benchmarks.md,
    issue 4). What verification decides from the token alone (signature, algorithm,
    audience, issuer, claims) cannot change for the same string under the same key, and the
    time checks are repeated on every use; tokens that fail are never kept.
    """

    def __init__(self, settings: Settings) -> None:
        self.algorithm = settings.jwt_algorithm
        key = settings.jwt_secret if self.algorithm == "HS256" else settings.jwt_public_key
        if not key:
            raise ValueError(f"{self.algorithm} needs a key: set JWT_SECRET or JWT_PUBLIC_KEY")
        self.key = key
        self.audience = settings.jwt_audience
        self.issuer = settings.jwt_issuer
        self._verified: dict[str, _Verified] = {}

    def verify(self, token: str) -> Principal:
        kept = self._verified.get(token)
        if kept is not None:
            if kept.valid(time.time()):
                return kept.principal
            # Expired (or, with a clock set back, not yet valid): PyJWT says which.
            self._verified.pop(token, None)
        verified = self._verify(token)
        if len(self._verified) >= KEPT_TOKENS:
            self._verified.pop(next(iter(self._verified)), None)
        self._verified[token] = verified
        return verified.principal

    def _verify(self, token: str) -> _Verified:
        try:
            claims = jwt.decode(
                token,
                self.key,
                algorithms=[self.algorithm],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "tenant", "roles"]},
            )
        except jwt.ExpiredSignatureError as error:
            raise InvalidToken("token has expired") from error
        except jwt.PyJWTError as error:
            raise InvalidToken(f"invalid token: {error}") from error
        # PyJWT has checked that exp, and iat and nbf when present, are integers.
        starts = [int(claims[name]) for name in ("iat", "nbf") if name in claims]
        return _Verified(_principal(claims), max(starts, default=-math.inf), int(claims["exp"]))


def _principal(claims: dict[str, Any]) -> Principal:
    tenant, roles = claims["tenant"], claims["roles"]
    if not isinstance(tenant, str) or not isinstance(roles, list) or not roles:
        raise InvalidToken("invalid token: tenant must be a string and roles a non-empty list")
    try:
        check_slug(tenant)
        parsed = frozenset(Role(role) for role in roles)
        # PyJWT accepts any integer exp; one past the year 9999 is no datetime.
        expires_at = datetime.fromtimestamp(claims["exp"], tz=UTC)
    except (ValueError, OverflowError, OSError) as error:
        raise InvalidToken(f"invalid token: {error}") from error
    return Principal(
        subject=str(claims.get("sub", "anonymous")),
        tenant_id=tenant,
        roles=parsed,
        expires_at=expires_at,
    )


def mint_token(
    settings: Settings,
    tenant: str,
    roles: Iterable[Role | str],
    subject: str = "dev",
    ttl: timedelta = timedelta(days=30),
) -> str:
    """A signed token for development and tests (RS256 needs JWT_PRIVATE_KEY)."""
    now = datetime.now(UTC)
    claims: dict[str, Any] = {
        "sub": subject,
        "tenant": check_slug(tenant),
        "roles": [Role(r).value for r in roles],
        "iat": now,
        "exp": now + ttl,
    }
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    key = settings.jwt_secret if settings.jwt_algorithm == "HS256" else settings.jwt_private_key
    if not key:
        raise ValueError("minting RS256 tokens needs JWT_PRIVATE_KEY or JWT_PRIVATE_KEY_FILE")
    return jwt.encode(claims, key, algorithm=settings.jwt_algorithm)
