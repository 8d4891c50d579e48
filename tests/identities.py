"""Who the tests call as: identities for `Context(identity=...)` and actors for
the command service, so a test says which role it acts in."""

from __future__ import annotations

from api.identity import Identity, Role

__all__ = ["ADMIN", "STAFF", "customer"]

STAFF = Identity(Role.STAFF, subject="staff-1", issuer="tests")
ADMIN = Identity(Role.ADMIN, subject="admin-1", issuer="tests")


def customer(customer_id: str, subject: str | None = None) -> Identity:
    """A signed-in customer whose token names `customer_id`."""
    return Identity(
        Role.CUSTOMER,
        subject=subject or f"sub-{customer_id}",
        issuer="tests",
        customer_id=customer_id,
    )
