"""The development signing key: an ES256 key pair kept in DATA_DIR.

`bicameral serve` creates it when missing and verifies tokens with its public
half; `bicameral token` signs with it. Production never reads it (api/settings.py
refuses to start without a JWKS issuer). The file holds a private key, so it is
written 0600 and created atomically: several API processes may start at once.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import stat
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from api.identity import Role

__all__ = ["KEY_FILE", "LOCAL_AUDIENCE", "LOCAL_ISSUER", "LocalSigningKey"]

log = logging.getLogger(__name__)

KEY_FILE = "auth-signing-key.pem"
# The `iss` and `aud` of local tokens when AUTH_ISSUER and AUTH_AUDIENCE are empty.
LOCAL_ISSUER = "urn:bicameral:local"
LOCAL_AUDIENCE = "bicameral"


def _b64(value: int) -> str:
    return base64.urlsafe_b64encode(value.to_bytes(32, "big")).rstrip(b"=").decode()


class LocalSigningKey:
    def __init__(self, private_key: ec.EllipticCurvePrivateKey) -> None:
        self.private_key = private_key
        self.public_key = private_key.public_key()
        # RFC 7638 thumbprint: the same key always has the same kid.
        numbers = self.public_key.public_numbers()
        canonical = json.dumps(
            {"crv": "P-256", "kty": "EC", "x": _b64(numbers.x), "y": _b64(numbers.y)},
            separators=(",", ":"),
            sort_keys=True,
        )
        digest = hashlib.sha256(canonical.encode()).digest()
        self.kid = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    @classmethod
    def path_in(cls, data_dir: Path) -> Path:
        return data_dir / KEY_FILE

    @classmethod
    def load_or_create(cls, data_dir: Path) -> LocalSigningKey:
        path = cls.path_in(data_dir)
        if not path.exists():
            cls._create(path)
        return cls.load(path)

    @classmethod
    def load(cls, path: Path) -> LocalSigningKey:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            log.warning("%s is readable by others (mode %o); it should be 0600", path, mode)
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise ValueError(f"{path} is not an ES256 (P-256) private key")
        return cls(key)

    @classmethod
    def _create(cls, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        # Written whole to a 0600 temporary file, then linked into place: a process
        # that lost the race reads the winner's complete key, never half of one.
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".signing-key-")
        try:
            os.write(fd, pem)
            os.fsync(fd)
            os.close(fd)
            try:
                os.link(temporary, path)
                log.info("created the local signing key %s", path)
            except FileExistsError:
                pass
        finally:
            os.unlink(temporary)

    def token(
        self,
        *,
        role: Role,
        subject: str,
        customer_id: str | None = None,
        ttl: timedelta = timedelta(hours=1),
        issuer: str = LOCAL_ISSUER,
        audience: str = LOCAL_AUDIENCE,
        role_claim: str = "role",
        customer_claim: str = "customer_id",
        now: datetime | None = None,
    ) -> str:
        issued = now or datetime.now(UTC)
        claims: dict[str, Any] = {
            "iss": issuer,
            "aud": audience,
            "sub": subject,
            "iat": issued,
            "nbf": issued,
            "exp": issued + ttl,
            role_claim: role.value,
        }
        if customer_id is not None:
            claims[customer_claim] = customer_id
        return jwt.encode(claims, self.private_key, algorithm="ES256", headers={"kid": self.kid})
