"""Identities for tests that call the schema in process: one per role."""

from __future__ import annotations

from api.identity import Identity, Role

__all__ = ["ADMIN", "STAFF", "customer"]

STAFF = Identity(Role.STAFF, subject="staff-1", issuer="test")
ADMIN = Identity(Role.ADMIN, subject="admin-1", issuer="test")


def customer(customer_id: str) -> Identity:
    return Identity(
        Role.CUSTOMER, subject=f"customer-{customer_id}", issuer="test", customer_id=customer_id
    )
