"""Who is calling: the identity every request and socket carries.

The API turns a verified token (api/auth) into an `Identity`; with no
token the caller is `ANONYMOUS`. Everything that decides access (the policy
table, the read side's row filters, the command layer's checks) reads this one
type, never the token.

A customer's id comes from the token: its `customer_id` claim when the issuer
sets one (`bicameral token --role customer --customer ID` does), else a
deterministic id derived from the issuer and subject (`customer_id_of`). So a
customer who signs in for the first time has an id before any customer exists;
`registerCustomer` creates the customer under that id, which binds the two
without a lookup table, and a query node can tell who is who without asking the
write database.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

__all__ = ["ANONYMOUS", "Identity", "Role", "customer_id_of"]

# Fixed for good: changing it would give every token-derived customer a new id.
_CUSTOMER_NAMESPACE = uuid.UUID("6f1c9a52-3e0b-4c7e-9d0a-8b1f2e4c6a10")


class Role(Enum):
    ANONYMOUS = "anonymous"
    CUSTOMER = "customer"
    STAFF = "staff"
    ADMIN = "admin"


@dataclass(frozen=True)
class Identity:
    role: Role
    # The token's `sub`; None for anonymous callers.
    subject: str | None = None
    # The token's `iss`; with `subject`, it names the caller across issuers.
    issuer: str | None = None
    # The customer this caller is (customers only).
    customer_id: str | None = None
    # When the token stops being valid; a socket is closed then.
    expires_at: datetime | None = None

    @property
    def is_staff(self) -> bool:
        """Staff and admins: the roles that see and change every customer's data."""
        return self.role in (Role.STAFF, Role.ADMIN)

    @property
    def is_anonymous(self) -> bool:
        return self.role is Role.ANONYMOUS


ANONYMOUS = Identity(Role.ANONYMOUS)


def customer_id_of(issuer: str, subject: str) -> str:
    """The customer id of a subject whose token names none: stable, and the same
    on every node (a name-based UUID of issuer and subject)."""
    return str(uuid.uuid5(_CUSTOMER_NAMESPACE, f"{issuer}\x00{subject}"))
