"""A bearer token in, an `Identity` out: PyJWT checks, this module decides.

What a token must be (docs/security.md, "Tokens"): signed with RS256 or ES256
(never `none`, never an HMAC: a server holding only public keys must not accept
a token "signed" with one of them as an HMAC secret), by a key of the issuer,
with `exp`, `iss`, `aud` and `sub`, within its `nbf`..`exp` window give or take
the clock skew. The role comes from AUTH_ROLE_CLAIM, the customer's id from
AUTH_CUSTOMER_CLAIM or from `iss` and `sub` (api/identity.py).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import jwt
from jwt import exceptions as e

from api.auth.errors import InvalidToken
from api.auth.keys import JwksKeys, KeySource, StaticKey
from api.auth.local_key import LOCAL_AUDIENCE, LOCAL_ISSUER, LocalSigningKey
from api.identity import Identity, Role, customer_id_of
from api.settings import Settings
from domain.errors import InvalidInput
from domain.rules import IdMustBeWellFormed

__all__ = ["ALGORITHMS", "TokenVerifier", "verifier_for"]

# Asymmetric only: the service holds public keys, which must never double as secrets.
ALGORITHMS = ("RS256", "ES256")
# A claim list's highest known role wins: the issuer granted all of them.
_RANK = (Role.ANONYMOUS, Role.CUSTOMER, Role.STAFF, Role.ADMIN)
_MAX_SUBJECT_CHARS = 255
# Verified tokens are remembered, so a client sending the same token on every
# request pays for one signature check, not one each (an ES256 verify cost about a
# sixth of a createProduct's CPU). Bounded in number, and in time: an entry lives
# until its token expires or for `_REMEMBER_SECONDS`, whichever comes first, so a
# key the issuer drops from its JWKS stops being honoured within that long.
_REMEMBERED_TOKENS = 10_000
_REMEMBER_SECONDS = 60.0

# PyJWT's refusals, as the short reason a client is told.
_REASONS: tuple[tuple[type[Exception], str], ...] = (
    (e.ExpiredSignatureError, "expired"),
    (e.ImmatureSignatureError, "not yet valid"),
    (e.InvalidAudienceError, "wrong audience"),
    (e.InvalidIssuerError, "wrong issuer"),
    (e.InvalidSignatureError, "bad signature"),
    (e.InvalidAlgorithmError, "algorithm not allowed"),
    (e.InvalidKeyError, "bad signature"),
    (e.InvalidIssuedAtError, "bad iat"),
    (e.DecodeError, "malformed token"),
)


class TokenVerifier:
    def __init__(
        self,
        keys: KeySource,
        *,
        issuer: str,
        audience: str,
        clock_skew: float = 30.0,
        role_claim: str = "role",
        customer_claim: str = "customer_id",
        default_role: str = "customer",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.keys = keys
        self.clock = clock
        # token -> (identity, the time.time() after which it must be checked again)
        self._verified: OrderedDict[str, tuple[Identity, float]] = OrderedDict()
        self.issuer = issuer
        self.audience = audience
        self.clock_skew = clock_skew
        self.role_claim = role_claim
        self.customer_claim = customer_claim
        self.default_role = default_role

    async def identity(self, token: str) -> Identity:
        """Who the token says is calling; InvalidToken with a short reason if it cannot
        be trusted, KeysUnavailable if the issuer's keys cannot be had."""
        now = self.clock()
        remembered = self._verified.get(token)
        if remembered is not None:
            if now < remembered[1]:
                self._verified.move_to_end(token)
                return remembered[0]
            del self._verified[token]
        identity = await self._verify(token)
        expires = identity.expires_at.timestamp() if identity.expires_at else now
        self._verified[token] = (identity, min(expires, now + _REMEMBER_SECONDS))
        if len(self._verified) > _REMEMBERED_TOKENS:
            self._verified.popitem(last=False)
        return identity

    async def _verify(self, token: str) -> Identity:
        try:
            header = jwt.get_unverified_header(token)
        except e.PyJWTError:
            raise InvalidToken("malformed token") from None
        if header.get("alg") not in ALGORITHMS:
            raise InvalidToken("algorithm not allowed")
        key = await self.keys.key_for(header)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=list(ALGORITHMS),
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.clock_skew,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except e.MissingRequiredClaimError as error:
            raise InvalidToken(f"missing claim {error.claim}") from None
        except e.PyJWTError as error:
            raise InvalidToken(_reason(error)) from None
        return self.identity_of(claims)

    def identity_of(self, claims: dict[str, Any]) -> Identity:
        subject = claims["sub"]
        if not isinstance(subject, str) or not 0 < len(subject) <= _MAX_SUBJECT_CHARS:
            raise InvalidToken("malformed sub")
        issuer: str = claims["iss"]
        role = self._role(claims.get(self.role_claim))
        customer_id = None
        if role is Role.CUSTOMER:
            given = claims.get(self.customer_claim)
            if given is None:
                customer_id = customer_id_of(issuer, subject)
            elif not isinstance(given, str):
                raise InvalidToken(f"malformed {self.customer_claim}")
            else:
                try:
                    customer_id = IdMustBeWellFormed.check(given, self.customer_claim)
                except InvalidInput:
                    raise InvalidToken(f"malformed {self.customer_claim}") from None
        return Identity(
            role=role,
            subject=subject,
            issuer=issuer,
            customer_id=customer_id,
            expires_at=datetime.fromtimestamp(claims["exp"], UTC),
        )

    def _role(self, value: object) -> Role:
        names = value if isinstance(value, list) else [value]
        known = [r for r in _RANK if r.value in names]
        if known:
            return known[-1]
        if self.default_role == "none":
            raise InvalidToken("no known role")
        return Role(self.default_role)


def _reason(error: Exception) -> str:
    for kind, reason in _REASONS:
        if isinstance(error, kind):
            return reason
    return "invalid token"


def verifier_for(settings: Settings) -> TokenVerifier:
    """The verifier a deployment's settings describe: the JWKS issuer's keys, or the
    local signing key (created in DATA_DIR when missing; development only)."""
    keys: KeySource
    if settings.auth_jwks_url:
        keys = JwksKeys(settings.auth_jwks_url, cache_seconds=settings.auth_jwks_cache_seconds)
    else:
        keys = StaticKey(LocalSigningKey.load_or_create(settings.data_dir).public_key)
    return TokenVerifier(
        keys,
        issuer=settings.auth_issuer or LOCAL_ISSUER,
        audience=settings.auth_audience or LOCAL_AUDIENCE,
        clock_skew=settings.auth_clock_skew,
        role_claim=settings.auth_role_claim,
        customer_claim=settings.auth_customer_claim,
        default_role=settings.auth_default_role,
    )
