"""A deterministic synthetic catalog, and the rows it puts in a write database.

Product `i` is the same on every database and in every run (its own seeded
random), so the system and its baseline see the same products. Prefilling
writes what the service's commands would have written for them, state and
outbox alike (a createProduct with initial stock: products, stock,
ProductCreated, StockReceived), in large batches; it is setup, never timed.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from writemodel.tables import customers, events, products, stock

__all__ = [
    "CatalogCustomer",
    "CatalogProduct",
    "advance_checkpoints",
    "customer",
    "insert_catalog",
    "insert_customers",
    "lag",
    "product",
    "search_words",
]


def _words(text: str) -> list[str]:
    return text.split()


# Plain words: names and descriptions draw from them, searches ask for them.
WORDS = _words(
    "amber anchor apple arch aspen autumn bamboo basil beacon birch blossom breeze bronze "
    "canyon cedar cherry cinder citrus clover cobalt copper coral cotton crystal dawn delta "
    "desert dune ember falcon fern fjord flint forest frost garnet ginger glacier granite "
    "harbor hazel heather honey indigo iris ivory jade jasmine juniper lagoon lantern laurel "
    "lemon lilac linen lotus maple marble meadow mint mist moss nectar nova oak ocean olive "
    "onyx opal orchid pearl pebble pepper pine plum poppy prairie quartz rain raven reef "
    "ridge river robin rose ruby saffron sage sand sapphire scarlet shadow sierra silk "
    "silver slate snow solar spruce stone storm summit sunset thistle thunder tide timber "
    "topaz tulip tundra valley velvet violet walnut willow winter wren zephyr"
)
CATEGORIES = _words(
    "kitchen garden office travel outdoor bath lighting storage textiles tools toys audio "
    "stationery pantry pets fitness decor tableware bedding crafts"
)
TAGS = _words(
    "eco handmade gift sale new bestseller limited organic vintage compact durable "
    "portable premium classic modern rustic minimal bold soft bright recycled local "
    "seasonal quiet fast light heavy warm cool family kids"
)
# Stock large enough that no benchmark runs out of it.
ON_HAND = 1_000_000
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class CatalogProduct:
    index: int
    id: str
    sku: str
    name: str
    description: str
    category: str
    tags: list[str]
    price: int
    currency: str
    created_at: datetime

    def create_input(self, initial_stock: int = ON_HAND) -> dict[str, Any]:
        """The createProduct input that makes this product (its id aside)."""
        return {
            "sku": self.sku,
            "name": self.name,
            "description": self.description,
            "category": self.category,
            "tags": self.tags,
            "price": self.price,
            "currency": self.currency,
            "initialStock": initial_stock,
        }


def product(i: int, *, sku_prefix: str = "CAT") -> CatalogProduct:
    rng = random.Random(1_000_003 * i + 7)
    words = rng.sample(WORDS, 15)
    return CatalogProduct(
        index=i,
        id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        sku=f"{sku_prefix}-{i:07d}",
        name=" ".join(words[:3]).capitalize(),
        description=" ".join(words[3:]),
        category=rng.choice(CATEGORIES),
        tags=sorted(set(rng.sample(TAGS, 3))),
        price=rng.randrange(100, 20_000),
        currency="EUR",
        created_at=EPOCH + timedelta(seconds=i),
    )


def search_words() -> list[str]:
    """The words searches ask for: each is in about 12% of the products."""
    return list(WORDS[::7])


@dataclass(frozen=True)
class CatalogCustomer:
    id: str
    email: str
    name: str


def customer(i: int) -> CatalogCustomer:
    rng = random.Random(2_000_029 * i + 11)
    return CatalogCustomer(
        id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        email=f"customer{i}@bench.example",
        name=f"Customer {i}",
    )


def _chunks(start: int, stop: int, size: int) -> Iterator[range]:
    for low in range(start, stop, size):
        yield range(low, min(low + size, stop))


async def insert_catalog(engine: AsyncEngine, start: int, stop: int, *, page: int = 2000) -> None:
    """Products start..stop-1 with their stock and both events, as createProduct writes them."""
    now = datetime.now(UTC)
    for chunk in _chunks(start, stop, page):
        items = [product(i) for i in chunk]
        async with engine.begin() as conn:
            await conn.execute(
                insert(products),
                [
                    {
                        "id": p.id,
                        "version": 1,
                        "sku": p.sku,
                        "name": p.name,
                        "description": p.description,
                        "category": p.category,
                        "tags": p.tags,
                        "price": p.price,
                        "currency": p.currency,
                        "status": "active",
                        "created_at": p.created_at,
                        "updated_at": p.created_at,
                    }
                    for p in items
                ],
            )
            await conn.execute(
                insert(stock),
                [
                    {
                        "product_id": p.id,
                        "version": 1,
                        "on_hand": ON_HAND,
                        "reserved": 0,
                        "units_sold": 0,
                        "updated_at": p.created_at,
                    }
                    for p in items
                ],
            )
            rows: list[dict[str, Any]] = []
            for p in items:
                rows.append(_event(p.id, "Product", "ProductCreated", _created(p), now))
                rows.append(
                    _event(
                        p.id,
                        "Stock",
                        "StockReceived",
                        {"quantity": ON_HAND, "on_hand": ON_HAND},
                        now,
                    )
                )
            await conn.execute(insert(events), rows)


def _created(p: CatalogProduct) -> dict[str, Any]:
    return {
        "sku": p.sku,
        "name": p.name,
        "description": p.description,
        "category": p.category,
        "tags": p.tags,
        "price": p.price,
        "currency": p.currency,
        "status": "active",
    }


def _event(
    aggregate_id: str, aggregate_type: str, event_type: str, payload: dict[str, Any], now: datetime
) -> dict[str, Any]:
    return {
        "aggregate_type": aggregate_type,
        "aggregate_id": aggregate_id,
        "aggregate_version": 1,
        "event_type": event_type,
        "payload": payload,
        "occurred_at": now,
        "correlation_id": "bench-prefill",
    }


async def insert_customers(engine: AsyncEngine, count: int) -> None:
    now = datetime.now(UTC)
    people = [customer(i) for i in range(count)]
    async with engine.begin() as conn:
        await conn.execute(
            insert(customers),
            [
                {
                    "id": c.id,
                    "version": 1,
                    "email": c.email,
                    "name": c.name,
                    "erased": False,
                    "created_at": now,
                    "updated_at": now,
                }
                for c in people
            ],
        )
        await conn.execute(
            insert(events),
            [
                _event(
                    c.id, "Customer", "CustomerRegistered", {"email": c.email, "name": c.name}, now
                )
                for c in people
            ],
        )


async def head(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(
            (await conn.execute(select(func.coalesce(func.max(events.c.position), 0)))).scalar_one()
        )


async def advance_checkpoints(engine: AsyncEngine, names: list[str]) -> int:
    """Count every event so far as applied (setup for a rebuild that loads their state)."""
    from readmodel.checkpoints import Checkpoints

    position = await head(engine)
    book = Checkpoints(engine)
    for name in names:
        await book.reset(name, position, datetime.now(UTC))
    return position


PROJECTIONS = ("products", "orders", "customers")


async def lag(engine: AsyncEngine) -> tuple[int, int]:
    """(outbox head, the lowest checkpoint): the feed's lag is their difference."""
    from readmodel.checkpoints import read_all

    async with engine.connect() as conn:
        top = await conn.execute(select(func.coalesce(func.max(events.c.position), 0)))
        # Per read model, its furthest-behind partition (readmodel/checkpoints.py).
        positions = {c.name: c.position for c in await read_all(conn)}
        return int(top.scalar_one()), min(int(positions.get(n, 0)) for n in PROJECTIONS)
