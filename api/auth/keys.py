"""Where a token's public key comes from.

In production an OIDC issuer publishes its keys as a JWKS; `JwksKeys` keeps the
set cached and fetches it again when a token names a `kid` it has not seen (the
issuer rotated its keys), at most once per cooldown so a stream of made-up `kid`s
cannot make the service hammer the issuer. PyJWT's `PyJWKClient` fetches with
urllib, which blocks, so every fetch runs in a thread; a cached key costs none.
In development one fixed key verifies everything (`StaticKey`).
"""

from __future__ import annotations

import abc
import asyncio
from typing import Any

from jwt import PyJWK, PyJWKClient
from jwt.exceptions import PyJWKClientConnectionError, PyJWKClientError, PyJWKError

from api.auth.errors import InvalidToken, KeysUnavailable

__all__ = ["JwksKeys", "KeySource", "StaticKey"]


class KeySource(abc.ABC):
    @abc.abstractmethod
    async def key_for(self, header: dict[str, Any]) -> Any:
        """The public key (a PyJWK or a `cryptography` key) that must have signed a
        token with this JOSE header; InvalidToken if none may have."""


class StaticKey(KeySource):
    """One public key for every token (the local development key)."""

    def __init__(self, public_key: Any) -> None:
        self.public_key = public_key

    async def key_for(self, header: dict[str, Any]) -> Any:
        return self.public_key


class JwksKeys(KeySource):
    def __init__(
        self,
        url: str,
        *,
        cache_seconds: float = 300.0,
        cooldown_seconds: float = 10.0,
        timeout: float = 5.0,
    ) -> None:
        self.client = PyJWKClient(
            url,
            cache_jwk_set=True,
            lifespan=cache_seconds,
            timeout=timeout,
            cooldown_duration=cooldown_seconds,
            headers={"User-Agent": "bicameral"},
        )

    async def key_for(self, header: dict[str, Any]) -> PyJWK:
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidToken("the token names no key (kid)")
        cached = self._cached(kid)
        if cached is not None:
            return cached
        try:
            # Fetches the set when it is missing or stale, and again on an unknown kid.
            return await asyncio.to_thread(self.client.get_signing_key, kid)
        except PyJWKClientConnectionError as error:
            raise KeysUnavailable(str(error)) from None
        except PyJWKClientError as error:
            if "Unable to find a signing key" in str(error):
                raise InvalidToken("unknown key (kid)") from None
            raise KeysUnavailable(str(error)) from None
        except PyJWKError as error:  # the issuer published a set PyJWT cannot read
            raise KeysUnavailable(str(error)) from None

    def _cached(self, kid: str) -> PyJWK | None:
        """The key from the cached set, without a thread or a fetch; None when the set
        is not cached, stale, or lacks the kid."""
        cache = self.client.jwk_set_cache
        jwk_set = cache.get() if cache is not None else None
        if jwk_set is None:
            return None
        for key in jwk_set.keys:
            if key.key_id == kid and key.public_key_use in (None, "sig"):
                return key
        return None
