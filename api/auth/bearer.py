"""Where a token travels: an `Authorization: Bearer` header over HTTP, and the same
in a WebSocket's `connection_init` payload, in the shapes common clients send."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from api.auth.errors import InvalidToken

__all__ = ["bearer_token", "connection_token"]

# JWTs from real issuers stay under a few KB; longer is refused before any parsing.
MAX_TOKEN_CHARS = 8192


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization` header value; None when there is no header.
    Any other scheme, or an empty token, is an error rather than anonymous."""
    if authorization is None:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise InvalidToken("Authorization must be `Bearer <token>`")
    if len(token) > MAX_TOKEN_CHARS:
        raise InvalidToken("the token is too long")
    return token


def connection_token(payload: object, handshake_authorization: str | None = None) -> str | None:
    """The token of a `connection_init` payload, in any of the conventions clients use:
    `{"Authorization": "Bearer ..."}` (graphql-ws), `{"authorization": ...}`,
    `{"headers": {"Authorization": ...}}` (Hasura, Apollo) or `{"authToken": ...}`
    (Apollo's docs; a bare token or `Bearer ...`). Without one, the handshake's own
    `Authorization` header (non-browser clients can send it); else None."""
    if isinstance(payload, Mapping):
        value = _header(payload)
        headers = payload.get("headers")
        if value is None and isinstance(headers, Mapping):
            value = _header(headers)
        if value is None and "authToken" in payload:
            value = payload["authToken"]
            if isinstance(value, str) and " " not in value.strip():
                value = f"Bearer {value}"
        if value is not None:
            if not isinstance(value, str):
                raise InvalidToken("Authorization must be `Bearer <token>`")
            return bearer_token(value)
    return bearer_token(handshake_authorization)


def _header(mapping: Mapping[str, Any]) -> Any:
    for name in ("Authorization", "authorization"):
        if name in mapping:
            return mapping[name]
    return None
