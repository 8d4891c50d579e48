"""A few demo products, customers and an order, loaded through the command layer."""

from __future__ import annotations

import logging

from sqlalchemy import select

from api.bootstrap import Bicameral
from domain import commands as c
from domain.errors import AlreadyExists
from writemodel.access import SYSTEM  # the demo loads as the system, not as a request

__all__ = ["DEMO_CUSTOMER_EMAIL", "demo_customer_id", "load_demo"]

# The demo's one customer; `bicameral serve --demo` prints a customer token for it.
DEMO_CUSTOMER_EMAIL = "ada@example.com"

log = logging.getLogger(__name__)

_PRODUCTS = [
    (
        "KET-001",
        "Stovetop kettle",
        "A whistling steel kettle for gas and induction.",
        "kitchen",
        ("steel", "tea"),
        3490,
        25,
    ),
    (
        "MUG-002",
        "Blue enamel mug",
        "A light camping mug that takes a knock.",
        "kitchen",
        ("enamel", "camping", "tea"),
        1290,
        120,
    ),
    (
        "TNT-003",
        "Two-person tent",
        "Freestanding, 2.1 kg, sets up in five minutes.",
        "outdoor",
        ("camping", "shelter"),
        18900,
        8,
    ),
    (
        "LMP-004",
        "Head torch",
        "350 lumens, USB-C charging, red night mode.",
        "outdoor",
        ("camping", "light"),
        3900,
        40,
    ),
    (
        "BKS-005",
        "Field notebook",
        "Waterproof paper, 48 pages, fits a pocket.",
        "stationery",
        ("paper", "outdoor"),
        890,
        0,
    ),
]


async def load_demo(app: Bicameral) -> int:
    """Create what is missing; running it twice changes nothing. Returns products created."""
    created = 0
    for sku, name, description, category, tags, price, stock in _PRODUCTS:
        try:
            await app.commands.execute(
                c.CreateProduct(
                    sku=sku,
                    name=name,
                    description=description,
                    category=category,
                    tags=tags,
                    price=price,
                    currency="EUR",
                    initial_stock=stock,
                ),
                idempotency_key=f"demo:{sku}",
                actor=SYSTEM,
            )
            created += 1
        except AlreadyExists:
            pass
    try:
        customer = await app.commands.execute(
            c.RegisterCustomer(email=DEMO_CUSTOMER_EMAIL, name="Ada Lovelace"),
            idempotency_key="demo:customer:ada",
            actor=SYSTEM,
        )
        await app.commands.execute(
            c.PlaceOrder(
                customer_id=customer.snapshot["id"],
                lines=(c.OrderLineRequest("KET-001", 1), c.OrderLineRequest("MUG-002", 2)),
            ),
            idempotency_key="demo:order:ada",
            actor=SYSTEM,
        )
    except AlreadyExists:
        pass
    log.info("demo data: %d products created", created)
    app.committed()
    return created


async def demo_customer_id(app: Bicameral) -> str | None:
    """The demo customer's id, read from the write database (it was made when the demo
    first loaded, maybe long ago); None if there is no such customer."""
    from writemodel.tables import customers

    async with app.engine.connect() as conn:
        found = await conn.execute(
            select(customers.c.id).where(customers.c.email == DEMO_CUSTOMER_EMAIL)
        )
        return found.scalar_one_or_none()
