"""Bearer tokens: what the verifier accepts, and what the running app answers for the
rest (401 UNAUTHENTICATED, never anonymous). The app runs in process without its
lifespan: a refused token never reaches the write database or Elasticsearch, and
`{ __typename }` needs neither."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from starlette.applications import Starlette

from api.app import create_app
from api.auth import (
    LOCAL_AUDIENCE,
    LOCAL_ISSUER,
    InvalidToken,
    JwksKeys,
    KeysUnavailable,
    LocalSigningKey,
    StaticKey,
    TokenVerifier,
    verifier_for,
)
from api.identity import Role, customer_id_of
from api.settings import Settings
from tests.e2e.conftest import BIN

ISSUER = "https://issuer.test/"
AUDIENCE = "bicameral-api"


def claims(**changes: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    base: dict[str, Any] = {
        "iss": LOCAL_ISSUER,
        "aud": LOCAL_AUDIENCE,
        "sub": "user-1",
        "iat": now,
        "exp": now + timedelta(minutes=5),
        "role": "staff",
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256_with_public_key(payload: dict[str, Any], public_pem: bytes) -> str:
    """The classic confusion attack: an HMAC whose secret is the server's public key
    (PyJWT refuses to make one, so it is made by hand)."""
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps(payload, default=lambda d: int(d.timestamp())).encode())
    signature = hmac.new(public_pem, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{_b64(signature)}"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def local_key(data_dir: Path) -> LocalSigningKey:
    return LocalSigningKey.load_or_create(data_dir)


def sign(key: LocalSigningKey, payload: dict[str, Any]) -> str:
    return jwt.encode(payload, key.private_key, algorithm="ES256", headers={"kid": key.kid})


@pytest.fixture
def app(data_dir: Path, local_key: LocalSigningKey) -> Starlette:
    return create_app(Settings(data_dir=data_dir, cors_origins="https://shop.example"))


async def post(app: Starlette, headers: dict[str, str], query: str = "{ __typename }") -> Any:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
        return await client.post("/graphql", json={"query": query}, headers=headers)


def token_env(data_dir: Path) -> dict[str, str]:
    """The environment of `bicameral token`: this checkout's code, a local key in data_dir."""
    return {**os.environ, "DATA_DIR": str(data_dir), "BICAMERAL_ENV": "", "AUTH_JWKS_URL": ""}


def bad_tokens(key: LocalSigningKey) -> dict[str, tuple[str, str]]:
    """Each way a token can be wrong, with the reason the client is told."""
    now = datetime.now(UTC)
    other = LocalSigningKey(ec.generate_private_key(ec.SECP256R1()))
    public_pem = key.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return {
        # Two minutes: well past the 30 s clock skew.
        "expired": (sign(key, claims(exp=now - timedelta(minutes=2))), "expired"),
        "not yet valid": (sign(key, claims(nbf=now + timedelta(minutes=2))), "not yet valid"),
        "wrong audience": (sign(key, claims(aud="someone-else")), "wrong audience"),
        "wrong issuer": (sign(key, claims(iss="https://evil.test/")), "wrong issuer"),
        "wrong key": (sign(other, claims()), "bad signature"),
        "alg none": (jwt.encode(claims(), None, algorithm="none"), "algorithm not allowed"),
        "HS256 with the public key": (
            hs256_with_public_key(claims(), public_pem),
            "algorithm not allowed",
        ),
        "no exp": (sign(key, claims(exp=None)), "missing claim exp"),
        "no sub": (sign(key, claims(sub=None)), "missing claim sub"),
        "not a JWT": ("not-a-jwt", "malformed token"),
        "tampered payload": (
            sign(key, claims()).rsplit(".", 2)[0] + "." + _b64(b'{"role":"admin"}') + ".x",
            "malformed token",
        ),
    }


CASES = list(bad_tokens(LocalSigningKey(ec.generate_private_key(ec.SECP256R1()))))


@pytest.mark.parametrize("case", CASES)
async def test_a_bad_token_is_refused_with_401_unauthenticated_never_anonymous(
    app: Starlette, local_key: LocalSigningKey, case: str
) -> None:
    token, reason = bad_tokens(local_key)[case]

    response = await post(app, {"Authorization": f"Bearer {token}"})

    assert response.status_code == 401
    assert response.json() == {
        "errors": [
            {
                "message": f"The bearer token is not valid: {reason}",
                "extensions": {"code": "UNAUTHENTICATED"},
            }
        ]
    }
    assert response.headers["www-authenticate"].startswith('Bearer error="invalid_token"')


@pytest.mark.parametrize("header", ["Basic dXNlcjpwdw==", "Bearer", "Bearer   ", "Token abc"])
async def test_an_authorization_header_that_is_no_bearer_token_is_refused(
    app: Starlette, header: str
) -> None:
    response = await post(app, {"Authorization": header})

    assert response.status_code == 401
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_without_a_token_a_request_runs_as_anonymous(app: Starlette) -> None:
    response = await post(app, {})

    assert response.status_code == 200
    assert response.json()["data"] == {"__typename": "Query"}


async def test_a_valid_token_is_accepted_over_http(
    app: Starlette, local_key: LocalSigningKey
) -> None:
    response = await post(app, {"Authorization": f"Bearer {sign(local_key, claims())}"})

    assert response.status_code == 200
    assert response.json()["data"] == {"__typename": "Query"}


async def test_a_token_expired_within_the_clock_skew_is_still_accepted(
    local_key: LocalSigningKey,
) -> None:
    verifier = TokenVerifier(
        StaticKey(local_key.public_key), issuer=LOCAL_ISSUER, audience=LOCAL_AUDIENCE, clock_skew=30
    )
    token = sign(local_key, claims(exp=datetime.now(UTC) - timedelta(seconds=10)))

    identity = await verifier.identity(token)

    assert identity.role is Role.STAFF


def _view(app: Starlette) -> Any:
    return next(r for r in app.routes if getattr(r, "path", None) == "/graphql").endpoint


async def test_the_request_context_carries_the_tokens_identity(
    app: Starlette, local_key: LocalSigningKey
) -> None:
    from starlette.requests import Request

    token = sign(local_key, claims(role="customer", customer_id="cust-42"))
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/graphql",
        "headers": [(b"authorization", f"Bearer {token}".encode())],
    }

    context = await _view(app).get_context(Request(scope), None)

    assert context.identity.role is Role.CUSTOMER
    assert context.identity.customer_id == "cust-42"
    assert context.identity.subject == "user-1"
    assert context.identity.issuer == LOCAL_ISSUER


# --- claims -> identity ---


def verifier(key: LocalSigningKey, **options: Any) -> TokenVerifier:
    return TokenVerifier(
        StaticKey(key.public_key), issuer=LOCAL_ISSUER, audience=LOCAL_AUDIENCE, **options
    )


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("staff", Role.STAFF),
        ("admin", Role.ADMIN),
        (["offline_access", "staff"], Role.STAFF),
        (["customer", "admin", "uma_authorization"], Role.ADMIN),
    ],
)
async def test_the_role_claim_may_be_a_string_or_a_list_where_the_highest_known_wins(
    local_key: LocalSigningKey, role: Any, expected: Role
) -> None:
    identity = await verifier(local_key).identity(sign(local_key, claims(role=role)))

    assert identity.role is expected
    assert identity.customer_id is None


async def test_a_customer_without_an_id_claim_gets_the_id_derived_from_issuer_and_subject(
    local_key: LocalSigningKey,
) -> None:
    identity = await verifier(local_key).identity(sign(local_key, claims(role="customer")))

    assert identity.customer_id == customer_id_of(LOCAL_ISSUER, "user-1")


@pytest.mark.parametrize(
    ("default", "expected"), [("customer", Role.CUSTOMER), ("anonymous", Role.ANONYMOUS)]
)
async def test_a_token_without_a_known_role_gets_the_default_role(
    local_key: LocalSigningKey, default: str, expected: Role
) -> None:
    token = sign(local_key, claims(role=["viewer"]))

    identity = await verifier(local_key, default_role=default).identity(token)

    assert identity.role is expected


async def test_with_default_role_none_a_token_without_a_known_role_is_refused(
    local_key: LocalSigningKey,
) -> None:
    with pytest.raises(InvalidToken, match="no known role"):
        await verifier(local_key, default_role="none").identity(sign(local_key, claims(role=None)))


@pytest.mark.parametrize("customer_id", ["has space", "x" * 37, 42, ""])
async def test_a_malformed_customer_id_claim_is_refused(
    local_key: LocalSigningKey, customer_id: Any
) -> None:
    token = sign(local_key, claims(role="customer", customer_id=customer_id))

    with pytest.raises(InvalidToken, match="malformed customer_id"):
        await verifier(local_key).identity(token)


async def test_the_role_and_customer_claims_are_settings(local_key: LocalSigningKey) -> None:
    token = sign(local_key, claims(role=None, **{"https://shop/roles": ["customer"], "cid": "c-7"}))

    identity = await verifier(
        local_key, role_claim="https://shop/roles", customer_claim="cid"
    ).identity(token)

    assert (identity.role, identity.customer_id) == (Role.CUSTOMER, "c-7")


# --- the local key and `bicameral token` ---


def test_the_local_key_is_created_once_readable_by_its_owner_only(data_dir: Path) -> None:
    first = LocalSigningKey.load_or_create(data_dir)
    second = LocalSigningKey.load_or_create(data_dir)

    path = LocalSigningKey.path_in(data_dir)
    assert path.stat().st_mode & 0o777 == 0o600
    assert first.kid == second.kid
    assert [p.name for p in data_dir.iterdir()] == [path.name]


@pytest.mark.parametrize(
    ("arguments", "role", "customer_id"),
    [
        (["--role", "customer", "--customer", "c-123"], Role.CUSTOMER, "c-123"),
        (["--role", "staff"], Role.STAFF, None),
        (["--role", "admin", "--subject", "root", "--ttl", "30m"], Role.ADMIN, None),
    ],
)
def test_bicameral_token_prints_a_token_the_server_accepts(
    data_dir: Path, arguments: list[str], role: Role, customer_id: str | None
) -> None:
    done = subprocess.run(
        [BIN / "bicameral", "token", *arguments],
        env=token_env(data_dir),
        capture_output=True,
        text=True,
        check=True,
    )
    token = done.stdout.strip()

    identity = asyncio.run(verifier_for(Settings(data_dir=data_dir)).identity(token))

    assert (identity.role, identity.customer_id) == (role, customer_id)
    assert identity.expires_at is not None
    assert identity.expires_at > datetime.now(UTC)


@pytest.mark.parametrize(
    "arguments",
    [
        ["--role", "staff", "--customer", "c-1"],
        ["--role", "customer", "--customer", "not an id"],
        ["--role", "anonymous"],
        ["--role", "admin", "--ttl", "forever"],
    ],
)
def test_bicameral_token_refuses_what_it_cannot_sign(data_dir: Path, arguments: list[str]) -> None:
    done = subprocess.run(
        [BIN / "bicameral", "token", *arguments],
        env=token_env(data_dir),
        capture_output=True,
        text=True,
    )

    assert done.returncode == 2
    assert done.stdout == ""


# --- an issuer's JWKS ---


class Issuer:
    """A test OIDC issuer on 127.0.0.1: serves /jwks.json from `keys`, counts fetches."""

    def __init__(self) -> None:
        self.keys: dict[str, rsa.RSAPrivateKey] = {}
        self.fetches = 0
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                issuer.fetches += 1
                body = json.dumps(issuer.jwks()).encode()
                self.send_response(200 if self.path == "/jwks.json" else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"

    def rotate(self, kid: str) -> None:
        """Publish a new key; the old ones go."""
        self.keys = {kid: rsa.generate_private_key(public_exponent=65537, key_size=2048)}

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid, key in self.keys.items():
            jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
            keys.append({**jwk, "kid": kid, "use": "sig", "alg": "RS256"})
        return {"keys": keys}

    def token(self, kid: str, **changes: Any) -> str:
        payload = claims(iss=ISSUER, aud=AUDIENCE, **changes)
        return jwt.encode(payload, self.keys[kid], algorithm="RS256", headers={"kid": kid})


@pytest.fixture
def issuer() -> Iterator[Issuer]:
    running = Issuer()
    thread = threading.Thread(target=running.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield running
    finally:
        running.server.shutdown()
        running.server.server_close()
        thread.join(timeout=5)


def jwks_verifier(issuer: Issuer, cooldown: float) -> TokenVerifier:
    return TokenVerifier(
        JwksKeys(issuer.url, cooldown_seconds=cooldown), issuer=ISSUER, audience=AUDIENCE
    )


async def test_a_key_rotation_at_the_issuer_is_picked_up_without_a_restart(
    issuer: Issuer,
) -> None:
    issuer.rotate("key-1")
    verify = jwks_verifier(issuer, cooldown=0)
    before = await verify.identity(issuer.token("key-1"))

    issuer.rotate("key-2")
    after = await verify.identity(issuer.token("key-2"))

    assert (before.role, after.role) == (Role.STAFF, Role.STAFF)
    assert issuer.fetches == 2


async def test_a_known_key_is_served_from_the_cache(issuer: Issuer) -> None:
    issuer.rotate("key-1")
    verify = jwks_verifier(issuer, cooldown=0)

    for _ in range(5):
        await verify.identity(issuer.token("key-1"))

    assert issuer.fetches == 1


async def test_unknown_kids_refetch_at_most_once_per_cooldown(issuer: Issuer) -> None:
    issuer.rotate("key-1")
    verify = jwks_verifier(issuer, cooldown=60)
    await verify.identity(issuer.token("key-1"))
    forged = LocalSigningKey(ec.generate_private_key(ec.SECP256R1()))

    for n in range(5):
        token = jwt.encode(
            claims(iss=ISSUER, aud=AUDIENCE),
            forged.private_key,
            algorithm="ES256",
            headers={"kid": f"made-up-{n}"},
        )
        with pytest.raises(InvalidToken, match="unknown key"):
            await verify.identity(token)

    assert issuer.fetches == 1


async def test_a_token_for_the_issuers_kid_signed_by_another_key_is_refused(
    issuer: Issuer,
) -> None:
    issuer.rotate("key-1")
    real = issuer.keys["key-1"]
    issuer.keys["key-1"] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = issuer.token("key-1")
    issuer.keys["key-1"] = real

    with pytest.raises(InvalidToken, match="bad signature"):
        await jwks_verifier(issuer, cooldown=0).identity(forged)


async def test_an_unreachable_issuer_is_unavailable_not_unauthenticated(issuer: Issuer) -> None:
    issuer.rotate("key-1")
    token = issuer.token("key-1")
    issuer.server.shutdown()
    issuer.server.server_close()

    with pytest.raises(KeysUnavailable):
        await jwks_verifier(issuer, cooldown=0).identity(token)


async def test_over_http_a_jwks_token_is_accepted_and_a_forged_one_refused(
    issuer: Issuer, tmp_path: Path
) -> None:
    issuer.rotate("key-1")
    app = create_app(
        Settings(
            data_dir=tmp_path,
            auth_jwks_url=issuer.url,
            auth_issuer=ISSUER,
            auth_audience=AUDIENCE,
        )
    )
    good = issuer.token("key-1", role="admin")
    local = LocalSigningKey.load_or_create(tmp_path / "elsewhere")

    accepted = await post(app, {"Authorization": f"Bearer {good}"})
    refused = await post(
        app, {"Authorization": f"Bearer {sign(local, claims(iss=ISSUER, aud=AUDIENCE))}"}
    )

    assert accepted.status_code == 200
    assert refused.status_code == 401
    assert not LocalSigningKey.path_in(tmp_path).exists()  # no local key with a JWKS


async def test_over_http_an_unreachable_issuer_answers_503_not_401(
    issuer: Issuer, tmp_path: Path
) -> None:
    issuer.rotate("key-1")
    token = issuer.token("key-1")
    issuer.server.shutdown()
    issuer.server.server_close()
    app = create_app(
        Settings(
            data_dir=tmp_path, auth_jwks_url=issuer.url, auth_issuer=ISSUER, auth_audience=AUDIENCE
        )
    )

    response = await post(app, {"Authorization": f"Bearer {token}"})

    assert response.status_code == 503
    assert response.json()["errors"][0]["extensions"]["code"] == "AUTH_UNAVAILABLE"
    assert "retry-after" in response.headers


# --- CORS ---


async def _cors(app: Starlette, method: str, origin: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
        if method == "OPTIONS":
            return await client.options(
                "/graphql",
                headers={
                    "Origin": origin,
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "authorization, content-type",
                },
            )
        return await client.post(
            "/graphql", json={"query": "{ __typename }"}, headers={"Origin": origin}
        )


async def test_an_allowed_origin_gets_the_cors_headers(app: Starlette) -> None:
    response = await _cors(app, "POST", "https://shop.example")

    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "https://shop.example"
    assert response.headers["access-control-allow-credentials"] == "true"


async def test_another_origin_gets_no_cors_headers(app: Starlette) -> None:
    response = await _cors(app, "POST", "https://evil.example")

    assert "access-control-allow-origin" not in response.headers


async def test_a_preflight_from_an_allowed_origin_gets_200_with_the_headers_cached(
    app: Starlette,
) -> None:
    response = await _cors(app, "OPTIONS", "https://shop.example")

    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "https://shop.example"
    allowed = response.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed
    assert "content-type" in allowed
    assert response.headers["access-control-max-age"] == "600"


async def test_a_preflight_for_the_trace_context_headers_is_allowed(app: Starlette) -> None:
    # A browser app traced with OpenTelemetry sends traceparent and tracestate.
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
        response = await client.options(
            "/graphql",
            headers={
                "Origin": "https://shop.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type, traceparent, tracestate",
            },
        )

    assert response.status_code == 200
    allowed = response.headers["access-control-allow-headers"].lower()
    assert "traceparent" in allowed
    assert "tracestate" in allowed


async def test_a_preflight_from_another_origin_is_refused(app: Starlette) -> None:
    response = await _cors(app, "OPTIONS", "https://evil.example")

    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers


async def test_without_cors_origins_no_origin_is_allowed(data_dir: Path) -> None:
    app = create_app(Settings(data_dir=data_dir))

    response = await _cors(app, "OPTIONS", "https://shop.example")

    assert "access-control-allow-origin" not in response.headers


# --- the production profile ---


async def test_in_production_graphiql_and_introspection_are_off(
    issuer: Issuer, tmp_path: Path
) -> None:
    issuer.rotate("key-1")
    app = create_app(
        Settings(
            data_dir=tmp_path,
            bicameral_env="production",
            auth_jwks_url=issuer.url,
            auth_issuer=ISSUER,
            auth_audience=AUDIENCE,
        )
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
        page = await client.get("/graphql", headers={"Accept": "text/html"})
        introspection = await client.post(
            "/graphql", json={"query": "{ __schema { queryType { name } } }"}
        )

    assert page.status_code == 404
    assert "data" not in introspection.json()
    assert not LocalSigningKey.path_in(tmp_path).exists()


def test_serve_demo_prints_one_token_per_role_the_server_accepts(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from api.cli import _print_demo_tokens

    _print_demo_tokens(Settings(data_dir=data_dir), "demo-customer-1")

    printed = dict(
        line.strip().split(": ", 1)
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("  ")
    )
    verify = verifier_for(Settings(data_dir=data_dir))
    identities = {
        label.split(" ")[0]: asyncio.run(verify.identity(token)) for label, token in printed.items()
    }
    assert {name: i.role for name, i in identities.items()} == {
        "customer": Role.CUSTOMER,
        "staff": Role.STAFF,
        "admin": Role.ADMIN,
    }
    assert identities["customer"].customer_id == "demo-customer-1"


# --- verified tokens are remembered, for a while ---


class CountingKey(StaticKey):
    """The local public key, counting how often a signature check asked for it."""

    def __init__(self, public_key: Any) -> None:
        super().__init__(public_key)
        self.asked = 0

    async def key_for(self, header: dict[str, Any]) -> Any:
        self.asked += 1
        return await super().key_for(header)


async def test_a_token_sent_again_is_not_checked_again_until_a_minute_has_passed(
    local_key: LocalSigningKey,
) -> None:
    keys = CountingKey(local_key.public_key)
    now = [datetime.now(UTC).timestamp()]
    checker = TokenVerifier(
        keys, issuer=LOCAL_ISSUER, audience=LOCAL_AUDIENCE, clock=lambda: now[0]
    )
    token = sign(local_key, claims(exp=datetime.now(UTC) + timedelta(hours=1)))

    first = await checker.identity(token)
    again = await checker.identity(token)
    now[0] += 61
    later = await checker.identity(token)

    assert first == again == later
    assert keys.asked == 2  # once at first, once more after the minute


async def test_a_remembered_token_is_checked_again_once_it_expires(
    local_key: LocalSigningKey,
) -> None:
    keys = CountingKey(local_key.public_key)
    expires = datetime.now(UTC) + timedelta(seconds=20)
    now = [datetime.now(UTC).timestamp()]
    checker = TokenVerifier(
        keys, issuer=LOCAL_ISSUER, audience=LOCAL_AUDIENCE, clock=lambda: now[0]
    )
    token = sign(local_key, claims(exp=expires))

    await checker.identity(token)
    now[0] = expires.timestamp() + 1  # past `exp`, well within the minute
    await checker.identity(token)  # PyJWT's own clock still says valid

    assert keys.asked == 2


async def test_a_refused_token_is_not_remembered(local_key: LocalSigningKey) -> None:
    keys = CountingKey(local_key.public_key)
    checker = TokenVerifier(keys, issuer=LOCAL_ISSUER, audience="someone-else")
    token = sign(local_key, claims())

    for _ in range(2):
        with pytest.raises(InvalidToken):
            await checker.identity(token)

    assert keys.asked == 2
