"""Who is calling: bearer tokens checked with PyJWT and turned into an `Identity`.

  verifier.py   a token's signature, algorithm and claims -> Identity, or InvalidToken
  keys.py       where the public keys come from: an issuer's JWKS, or one fixed key
  local_key.py  the development signing key kept in DATA_DIR, and tokens signed with it
  bearer.py     finding the token in an HTTP header or a WebSocket's connection_init

The rules are in docs/security.md.
"""

from api.auth.bearer import bearer_token, connection_token
from api.auth.errors import InvalidToken, KeysUnavailable
from api.auth.keys import JwksKeys, KeySource, StaticKey
from api.auth.local_key import LOCAL_AUDIENCE, LOCAL_ISSUER, LocalSigningKey
from api.auth.verifier import ALGORITHMS, TokenVerifier, verifier_for

__all__ = [
    "ALGORITHMS",
    "LOCAL_AUDIENCE",
    "LOCAL_ISSUER",
    "InvalidToken",
    "JwksKeys",
    "KeySource",
    "KeysUnavailable",
    "LocalSigningKey",
    "StaticKey",
    "TokenVerifier",
    "bearer_token",
    "connection_token",
    "verifier_for",
]
