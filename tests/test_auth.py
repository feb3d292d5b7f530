"""Authentication: every token that is not exactly right is UNAUTHENTICATED, with a message
and no data, on the real server (HS256 and RS256), in TokenVerifier itself, and from the CLI.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.conftest import SeededTenant
from tests.helpers import TEST_SECRET, Api, ApiServer, codes
from tunelytics.config import Settings
from tunelytics.domain.auth import Role
from tunelytics.storage import Storage
from tunelytics.tokens import InvalidToken, TokenVerifier, mint_token

WRONG_SECRET = "another-secret-with-enough-entropy-9876543210"
READ = "{ viewer { tenantId roles } tracks(first: 5) { nodes { id title } } }"
WRITE = """mutation($items: [ArtistInput!]!) {
  upsertArtists(artists: $items) { artists { id } rejected { index } } }"""
DROP = object()  # a claim value meaning "leave the claim out"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segment(value: dict[str, Any]) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def claims(tenant_id: str, /, **overrides: Any) -> dict[str, Any]:
    """Good claims for the tenant; an override replaces one, DROP leaves it out."""
    now = int(datetime.now(UTC).timestamp())
    base: dict[str, Any] = {
        "sub": "tester",
        "tenant": tenant_id,
        "roles": ["admin"],
        "exp": now + 3600,
    }
    merged = {**base, **overrides}
    return {k: v for k, v in merged.items() if v is not DROP}


def hs256(payload: dict[str, Any], secret: str = TEST_SECRET) -> str:
    return jwt.encode(payload, secret, algorithm="HS256")


def unsigned(payload: dict[str, Any], alg: str = "none") -> str:
    """`alg: none`, built by hand: header, claims and an empty signature."""
    return f"{segment({'alg': alg, 'typ': 'JWT'})}.{segment(payload)}."


def hmac_signed(payload: dict[str, Any], secret: bytes, alg: str = "HS256") -> str:
    """HS256 (or HS512) built by hand with any bytes as the secret (PyJWT refuses PEM keys
    as secrets, an attacker's own code does not)."""
    digest = {"HS256": hashlib.sha256, "HS512": hashlib.sha512}[alg]
    signing_input = f"{segment({'alg': alg, 'typ': 'JWT'})}.{segment(payload)}"
    signature = hmac.new(secret, signing_input.encode(), digest).digest()
    return f"{signing_input}.{b64url(signature)}"


def strip_signature(token: str) -> str:
    return token.rsplit(".", 1)[0] + "."


def hours_ago(hours: int) -> int:
    return int((datetime.now(UTC) - timedelta(hours=hours)).timestamp())


# Each case: the Authorization header (None: none at all) for a caller of tenant `t`.
BAD_CREDENTIALS: dict[str, Callable[[str], str | None]] = {
    "missing": lambda t: None,
    "empty header": lambda t: "",
    "empty bearer": lambda t: "Bearer",
    "other scheme": lambda t: "Basic " + b64url(b"user:password"),
    "garbage": lambda t: "Bearer garbage",
    "three garbage segments": lambda t: "Bearer a.b.c",
    "alg none": lambda t: f"Bearer {unsigned(claims(t))}",
    "alg None": lambda t: f"Bearer {unsigned(claims(t), 'None')}",
    "alg NONE": lambda t: f"Bearer {unsigned(claims(t), 'NONE')}",
    "signature stripped": lambda t: f"Bearer {strip_signature(hs256(claims(t)))}",
    "expired": lambda t: f"Bearer {hs256(claims(t, exp=hours_ago(1)))}",
    "wrong secret": lambda t: f"Bearer {hs256(claims(t), WRONG_SECRET)}",
    "HS512 with the right secret": lambda t: (
        f"Bearer {hmac_signed(claims(t), TEST_SECRET.encode(), 'HS512')}"
    ),
    "missing tenant": lambda t: f"Bearer {hs256(claims(t, tenant=DROP))}",
    "missing roles": lambda t: f"Bearer {hs256(claims(t, roles=DROP))}",
    "missing exp": lambda t: f"Bearer {hs256(claims(t, exp=DROP))}",
    "unknown role": lambda t: f"Bearer {hs256(claims(t, roles=['root']))}",
    "unknown role beside a known one": lambda t: (
        f"Bearer {hs256(claims(t, roles=['viewer', 'superuser']))}"
    ),
    "roles not a list": lambda t: f"Bearer {hs256(claims(t, roles='admin'))}",
    "no roles": lambda t: f"Bearer {hs256(claims(t, roles=[]))}",
    "non-slug tenant": lambda t: f"Bearer {hs256(claims(t, tenant='Not A Slug'))}",
    "upper-case tenant": lambda t: f"Bearer {hs256(claims(t, tenant=t.upper()))}",
    "path in tenant": lambda t: f"Bearer {hs256(claims(t, tenant=f'{t}/../x'))}",
    "trailing newline in tenant": lambda t: f"Bearer {hs256(claims(t, tenant=t + chr(10)))}",
    "one-letter tenant": lambda t: f"Bearer {hs256(claims(t, tenant='a'))}",
    "tenant not a string": lambda t: f"Bearer {hs256(claims(t, tenant=42))}",
    "exp not a number": lambda t: f"Bearer {hs256(claims(t, exp='tomorrow'))}",
    "exp past year 9999": lambda t: f"Bearer {hs256(claims(t, exp=10**12))}",
    "not valid before a later time": lambda t: f"Bearer {hs256(claims(t, nbf=hours_ago(-1)))}",
    "subject not a string": lambda t: f"Bearer {hs256(claims(t, sub=42))}",
}


async def test_the_crafted_claims_are_good_when_signed_right(
    api: Api, tenant: SeededTenant
) -> None:
    """The control for every case below: only the one thing each case breaks is wrong."""
    for header in (
        f"Bearer {hs256(claims(tenant.id))}",
        f"bearer {hs256(claims(tenant.id))}",
        # The hand-made signature is sound: the PEM-keyed ones below fail for their key alone.
        f"Bearer {hmac_signed(claims(tenant.id), TEST_SECRET.encode())}",
    ):
        body = await api.post(READ, headers={"Authorization": header})
        assert "errors" not in body, body
        assert body["data"]["viewer"] == {"tenantId": tenant.id, "roles": ["ADMIN"]}
        assert len(body["data"]["tracks"]["nodes"]) == 5


@pytest.mark.parametrize("case", list(BAD_CREDENTIALS))
async def test_bad_credentials_are_unauthenticated_and_get_no_data(
    api: Api, storage: Storage, tenant: SeededTenant, case: str
) -> None:
    header = BAD_CREDENTIALS[case](tenant.id)
    headers = {} if header is None else {"Authorization": header}

    body = await api.post(READ, headers=headers)
    assert body["data"] is None
    assert codes(body) and set(codes(body)) == {"UNAUTHENTICATED"}
    assert all(error["message"] for error in body["errors"])
    assert tenant.demo.tracks[0].title not in json.dumps(body)

    body = await api.post(
        WRITE, {"items": [{"id": "ar-by-intruder", "name": "Intruder"}]}, headers=headers
    )
    assert body["data"] is None
    assert codes(body) == ["UNAUTHENTICATED"]
    assert await storage.db["artists"].count_documents({"id": "ar-by-intruder"}) == 0


async def test_the_messages_say_what_is_wrong(api: Api, tenant: SeededTenant) -> None:
    async def message(header: str | None) -> str:
        headers = {} if header is None else {"Authorization": header}
        body = await api.post("{ viewer { tenantId } }", headers=headers)
        assert codes(body) == ["UNAUTHENTICATED"]
        return str(body["errors"][0]["message"])

    assert "bearer token" in await message(None)
    assert "expired" in await message(BAD_CREDENTIALS["expired"](tenant.id))
    assert "invalid token" in await message(BAD_CREDENTIALS["wrong secret"](tenant.id))
    assert "alg" in await message(BAD_CREDENTIALS["alg none"](tenant.id))
    assert "exp" in await message(BAD_CREDENTIALS["missing exp"](tenant.id))


# RS256: a second server that verifies with a public key.


@dataclass(frozen=True)
class KeyPair:
    private_pem: str
    public_pem: str


def new_key_pair() -> KeyPair:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return KeyPair(private_pem, public_pem)


@pytest.fixture(scope="module")
def server_keys() -> KeyPair:
    return new_key_pair()


@pytest.fixture(scope="module")
def other_keys() -> KeyPair:
    return new_key_pair()


@pytest.fixture(scope="module")
def rs256_server(
    mongo_url: str,
    database_name: str,
    tmp_path_factory: pytest.TempPathFactory,
    server_keys: KeyPair,
) -> Iterator[ApiServer]:
    env = {
        "MONGODB_URL": mongo_url,
        "MONGODB_DATABASE": database_name,
        "REDIS_URL": "",
        "JWT_PUBLIC_KEY": server_keys.public_pem,
    }
    server = ApiServer(env, tmp_path_factory.mktemp("rs256") / "server.log")
    # ApiServer drops JWT_ALGORITHM after merging `env` (so that a developer's shell cannot
    # change the suite's server); this server is the one that must have it.
    server.env["JWT_ALGORITHM"] = "RS256"
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def rs256_api(rs256_server: ApiServer) -> AsyncIterator[Api]:
    client = Api(rs256_server.graphql_url)
    yield client
    await client.client.aclose()


def rs256(payload: dict[str, Any], keys: KeyPair) -> str:
    return jwt.encode(payload, keys.private_pem, algorithm="RS256")


async def test_rs256_token_signed_with_the_matching_key_works(
    rs256_api: Api, tenant: SeededTenant, server_keys: KeyPair
) -> None:
    tok = rs256(claims(tenant.id, roles=["viewer"]), server_keys)
    data = await rs256_api.data(
        '{ viewer { tenantId roles } track(id: "tr-00001") { title } }', token=tok
    )
    assert data == {
        "viewer": {"tenantId": tenant.id, "roles": ["VIEWER"]},
        "track": {"title": tenant.demo.tracks[0].title},
    }
    # And an admin one writes, through the same key.
    admin = rs256(claims(tenant.id), server_keys)
    data = await rs256_api.data(WRITE, {"items": [{"id": "ar-rs256", "name": "RS"}]}, admin)
    assert data["upsertArtists"] == {"artists": [{"id": "ar-rs256"}], "rejected": []}


async def test_rs256_server_refuses_every_other_signature(
    rs256_api: Api,
    storage: Storage,
    tenant: SeededTenant,
    server_keys: KeyPair,
    other_keys: KeyPair,
) -> None:
    good = claims(tenant.id)
    public = server_keys.public_pem
    attempts = {
        "another private key": rs256(good, other_keys),
        # Algorithm confusion: the server's public key (which is public) as an HMAC secret.
        "HS256 keyed with the public PEM": hmac_signed(good, public.encode()),
        "HS256 keyed with the PEM, no trailing newline": hmac_signed(good, public.strip().encode()),
        "HS256 with the suite's shared secret": hs256(good),
        "alg none": unsigned(good),
        "signature stripped": strip_signature(rs256(good, server_keys)),
        "expired": rs256(claims(tenant.id, exp=hours_ago(1)), server_keys),
        "unknown role": rs256(claims(tenant.id, roles=["root"]), server_keys),
    }
    for name, tok in attempts.items():
        body = await rs256_api.post(READ, token=tok)
        assert body["data"] is None, name
        assert codes(body) and set(codes(body)) == {"UNAUTHENTICATED"}, name
        body = await rs256_api.post(WRITE, {"items": [{"id": "ar-forged", "name": "F"}]}, tok)
        assert codes(body) == ["UNAUTHENTICATED"], name
    assert await storage.db["artists"].count_documents({"id": "ar-forged"}) == 0


async def test_the_hs256_server_refuses_rs256_tokens(
    api: Api, tenant: SeededTenant, server_keys: KeyPair
) -> None:
    body = await api.post(READ, token=rs256(claims(tenant.id), server_keys))
    assert body["data"] is None
    assert set(codes(body)) == {"UNAUTHENTICATED"}


# TokenVerifier on its own (pure logic).


HS = Settings(jwt_secret=TEST_SECRET)


def test_verifier_accepts_a_good_token() -> None:
    exp = int((datetime.now(UTC) + timedelta(minutes=5)).timestamp())
    payload = claims("acme", roles=["viewer", "analyst"], exp=exp, sub="someone")
    principal = TokenVerifier(HS).verify(hs256(payload))
    assert principal.subject == "someone"
    assert principal.tenant_id == "acme"
    assert principal.roles == frozenset({Role.VIEWER, Role.ANALYST})
    assert principal.expires_at == datetime.fromtimestamp(exp, tz=UTC)
    # No subject is allowed: the caller is anonymous within its tenant.
    assert TokenVerifier(HS).verify(hs256(claims("acme", sub=DROP))).subject == "anonymous"


@pytest.mark.parametrize(
    "case", [c for c in BAD_CREDENTIALS if c not in ("missing", "empty header", "other scheme")]
)
def test_verifier_refuses_what_the_server_refuses(case: str) -> None:
    header = BAD_CREDENTIALS[case]("acme")
    assert header is not None
    tok = header.removeprefix("Bearer").strip()
    with pytest.raises(InvalidToken) as error:
        TokenVerifier(HS).verify(tok)
    assert str(error.value)


def test_verifier_rs256() -> None:
    keys, other = new_key_pair(), new_key_pair()
    settings = Settings(jwt_algorithm="RS256", jwt_secret=None, jwt_public_key=keys.public_pem)
    verifier = TokenVerifier(settings)
    assert verifier.verify(rs256(claims("acme"), keys)).tenant_id == "acme"
    for tok in (
        rs256(claims("acme"), other),
        hmac_signed(claims("acme"), keys.public_pem.encode()),
        hmac_signed(claims("acme"), keys.public_pem.strip().encode()),
        hs256(claims("acme")),
        unsigned(claims("acme")),
        strip_signature(rs256(claims("acme"), keys)),
        rs256(claims("acme", exp=hours_ago(1)), keys),
        rs256(claims("acme", tenant=DROP), keys),
    ):
        with pytest.raises(InvalidToken):
            verifier.verify(tok)
    # mint_token signs with the private key when configured with one.
    minting = Settings(jwt_algorithm="RS256", jwt_secret=None, jwt_private_key=keys.private_pem)
    assert verifier.verify(mint_token(minting, "acme", ["ingest"])).roles == {Role.INGEST}


def test_a_token_used_again_is_refused_once_it_expires() -> None:
    """Verified tokens are answered from memory on later requests: the expiry still holds,
    to the second PyJWT itself refuses at."""
    verifier = TokenVerifier(HS)
    exp = int(time.time()) + 2
    tok = hs256(claims("acme", exp=exp))
    first = verifier.verify(tok)
    assert verifier.verify(tok) == first
    while time.time() < exp:  # by the wall clock, which a monotonic sleep may undershoot
        time.sleep(exp - time.time() + 0.01)
    with pytest.raises(InvalidToken, match="token has expired"):
        verifier.verify(tok)
    with pytest.raises(InvalidToken, match="token has expired"):
        verifier.verify(tok)


def test_a_refused_token_stays_refused_and_a_good_one_beside_it_is_accepted() -> None:
    verifier = TokenVerifier(HS)
    good = hs256(claims("acme"))
    for bad in (
        hs256(claims("acme"), WRONG_SECRET),
        hs256(claims("acme", nbf=int(time.time()) + 600)),
    ):
        for _ in range(2):
            with pytest.raises(InvalidToken):
                verifier.verify(bad)
        assert verifier.verify(good).tenant_id == "acme"


def test_verifier_needs_a_key() -> None:
    with pytest.raises(ValueError):
        TokenVerifier(Settings(jwt_secret=None))
    with pytest.raises(ValueError):
        TokenVerifier(Settings(jwt_algorithm="RS256", jwt_public_key=None))


def test_verifier_checks_audience_and_issuer_when_configured() -> None:
    settings = Settings(jwt_secret=TEST_SECRET, jwt_audience="tunelytics", jwt_issuer="https://idp")
    verifier = TokenVerifier(settings)
    assert verifier.verify(mint_token(settings, "acme", ["viewer"])).tenant_id == "acme"
    for extra in (
        {},
        {"aud": "tunelytics"},
        {"iss": "https://idp"},
        {"aud": "someone-else", "iss": "https://idp"},
        {"aud": "tunelytics", "iss": "https://evil"},
    ):
        with pytest.raises(InvalidToken):
            verifier.verify(hs256(claims("acme", **extra)))
    assert verifier.verify(hs256(claims("acme", aud="tunelytics", iss="https://idp")))


# The CLI mints tokens the verifier accepts.


def cli_token(*args: str, env: dict[str, str]) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("JWT_")}
    result = subprocess.run(
        [sys.executable, "-m", "tunelytics", "token", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_cli_token_is_accepted_with_the_same_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    tok = cli_token(
        "--tenant", "demo", "--role", "viewer", "--ttl", "15m", env={"JWT_SECRET": TEST_SECRET}
    )
    after = datetime.now(UTC)
    for name in ("JWT_ALGORITHM", "JWT_AUDIENCE", "JWT_ISSUER", "JWT_PUBLIC_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JWT_SECRET", TEST_SECRET)
    principal = TokenVerifier(Settings.from_env()).verify(tok)
    assert principal.tenant_id == "demo"
    assert principal.roles == frozenset({Role.VIEWER})
    assert principal.subject == "dev"
    assert principal.expires_at is not None
    assert before + timedelta(minutes=15) <= principal.expires_at <= after + timedelta(minutes=15)
    # Another secret does not accept it.
    with pytest.raises(InvalidToken):
        TokenVerifier(Settings(jwt_secret=WRONG_SECRET)).verify(tok)


def test_cli_token_with_several_roles_and_rs256(tmp_path: Path) -> None:
    tok = cli_token(
        "--tenant", "acme", "--role", "viewer", "--role", "analyst", "--subject", "ana",
        env={"JWT_SECRET": TEST_SECRET},
    )  # fmt: skip
    principal = TokenVerifier(HS).verify(tok)
    assert (principal.tenant_id, principal.subject) == ("acme", "ana")
    assert principal.roles == frozenset({Role.VIEWER, Role.ANALYST})

    keys = new_key_pair()
    key_file = tmp_path / "private.pem"
    key_file.write_text(keys.private_pem)
    tok = cli_token(
        "--tenant", "acme", "--role", "ingest",
        env={"JWT_ALGORITHM": "RS256", "JWT_PRIVATE_KEY_FILE": str(key_file)},
    )  # fmt: skip
    verifier = TokenVerifier(Settings(jwt_algorithm="RS256", jwt_public_key=keys.public_pem))
    assert verifier.verify(tok).roles == frozenset({Role.INGEST})
    with pytest.raises(InvalidToken):
        TokenVerifier(HS).verify(tok)
