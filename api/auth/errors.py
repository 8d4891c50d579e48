"""The two ways a token can fail to name a caller."""

from __future__ import annotations

__all__ = ["InvalidToken", "KeysUnavailable"]


class InvalidToken(Exception):
    """The token cannot be trusted. `reason` is short and safe to send back
    ("expired", "bad signature", "wrong audience"...): it says what to fix,
    never what the key or the expected values are."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class KeysUnavailable(Exception):
    """The issuer's keys could not be fetched: the token may be fine, the service
    cannot tell (the caller is not at fault, so this is not UNAUTHENTICATED)."""
