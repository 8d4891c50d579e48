"""Projections: a batch of outbox events in, whole documents out.

Each projection says which aggregates' events it takes, finds the documents
those events touch, and rebuilds each from the write database's current
state, never by increment. Every document carries, as its Elasticsearch
external version, the position of the newest event that touched it: a replay
or a late duplicate carries an older position and cannot roll it back.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from readmodel.indexes import CUSTOMERS, ORDERS, PRODUCTS, IndexDefinition
from writemodel.outbox import StoredEvent, as_utc
from writemodel.tables import customers, order_lines, orders, products, stock

__all__ = [
    "CustomersProjection",
    "DeleteDocument",
    "IndexDocument",
    "OrdersProjection",
    "ProductsProjection",
    "Projection",
    "default_projections",
]


@dataclass(frozen=True)
class IndexDocument:
    id: str
    version: int
    document: dict[str, Any]


@dataclass(frozen=True)
class DeleteDocument:
    id: str
    version: int


Action = IndexDocument | DeleteDocument


def _iso(value: datetime | None) -> str | None:
    return None if value is None else as_utc(value).isoformat()


def _touched(events: Iterable[StoredEvent], types: set[str]) -> dict[str, int]:
    """aggregate id -> newest position among the events of the given aggregate types."""
    newest: dict[str, int] = {}
    for event in events:
        if event.aggregate_type in types:
            newest[event.aggregate_id] = max(newest.get(event.aggregate_id, 0), event.position)
    return newest


class Projection(ABC):
    index: IndexDefinition
    # Aggregate types whose events this projection takes; others pass it by.
    takes: frozenset[str]

    @property
    def name(self) -> str:
        return self.index.name

    @abstractmethod
    async def project(self, conn: AsyncConnection, events: list[StoredEvent]) -> list[Action]:
        """The documents the events touch, as they now stand in the write database."""

    @abstractmethod
    async def all_ids(self, conn: AsyncConnection, after: str, limit: int) -> list[str]:
        """Document ids in id order, for a full rebuild."""

    @abstractmethod
    async def count(self, conn: AsyncConnection) -> int:
        """How many ids `all_ids` lists in all: a full rebuild's total."""

    @abstractmethod
    async def documents(self, conn: AsyncConnection, ids: list[str]) -> dict[str, dict[str, Any]]:
        """Whole documents for these ids, from current state; absent ids are gone."""

    async def _actions(self, conn: AsyncConnection, newest: dict[str, int]) -> list[Action]:
        if not newest:
            return []
        docs = await self.documents(conn, sorted(newest))
        actions: list[Action] = []
        for id, position in newest.items():
            doc = docs.get(id)
            if doc is None:
                actions.append(DeleteDocument(id, position))
            else:
                doc["position"] = position
                actions.append(IndexDocument(id, position, doc))
        return actions


class ProductsProjection(Projection):
    index = PRODUCTS
    takes = frozenset({"Product", "Stock"})

    async def project(self, conn: AsyncConnection, events: list[StoredEvent]) -> list[Action]:
        # Stock is keyed by its product's id: both land on the product's document.
        return await self._actions(conn, _touched(events, {"Product", "Stock"}))

    async def all_ids(self, conn: AsyncConnection, after: str, limit: int) -> list[str]:
        rows = await conn.execute(
            select(products.c.id).where(products.c.id > after).order_by(products.c.id).limit(limit)
        )
        return list(rows.scalars())

    async def count(self, conn: AsyncConnection) -> int:
        return int((await conn.execute(select(func.count()).select_from(products))).scalar_one())

    async def documents(self, conn: AsyncConnection, ids: list[str]) -> dict[str, dict[str, Any]]:
        rows = await conn.execute(
            select(
                products,
                stock.c.version.label("stock_version"),
                stock.c.on_hand,
                stock.c.reserved,
                stock.c.units_sold,
            )
            .select_from(products.outerjoin(stock, stock.c.product_id == products.c.id))
            .where(products.c.id.in_(ids))
        )
        docs: dict[str, dict[str, Any]] = {}
        for row in rows:
            on_hand, reserved = row.on_hand or 0, row.reserved or 0
            docs[row.id] = {
                "id": row.id,
                "version": row.version,
                "sku": row.sku,
                "name": row.name,
                "name_sort": row.name.lower(),
                "name_suggest": {"input": [row.name, *row.name.split()]},
                "description": row.description,
                "category": row.category,
                "tags": list(row.tags),
                "price": row.price,
                "currency": row.currency,
                "status": row.status,
                "stock_version": row.stock_version or 0,
                "on_hand": on_hand,
                "reserved": reserved,
                "available": on_hand - reserved,
                "in_stock": on_hand - reserved > 0,
                "units_sold": row.units_sold or 0,
                "created_at": _iso(row.created_at),
                "updated_at": _iso(row.updated_at),
            }
        return docs


class OrdersProjection(Projection):
    """Orders embed their customer's name and email and each line's product name,
    so a customer's rename or erasure re-projects every order of theirs."""

    index = ORDERS
    takes = frozenset({"Order", "Customer", "Product"})

    async def project(self, conn: AsyncConnection, events: list[StoredEvent]) -> list[Action]:
        newest = _touched(events, {"Order"})
        by_customer = _touched(events, {"Customer"})
        if by_customer:
            rows = await conn.execute(
                select(orders.c.id, orders.c.customer_id).where(
                    orders.c.customer_id.in_(sorted(by_customer))
                )
            )
            for order_id, customer_id in rows:
                newest[order_id] = max(newest.get(order_id, 0), by_customer[customer_id])
        renamed = _touched((e for e in events if e.event_type == "ProductUpdated"), {"Product"})
        if renamed:
            rows = await conn.execute(
                select(order_lines.c.order_id, order_lines.c.product_id)
                .where(order_lines.c.product_id.in_(sorted(renamed)))
                .distinct()
            )
            for order_id, product_id in rows:
                newest[order_id] = max(newest.get(order_id, 0), renamed[product_id])
        return await self._actions(conn, newest)

    async def all_ids(self, conn: AsyncConnection, after: str, limit: int) -> list[str]:
        rows = await conn.execute(
            select(orders.c.id).where(orders.c.id > after).order_by(orders.c.id).limit(limit)
        )
        return list(rows.scalars())

    async def count(self, conn: AsyncConnection) -> int:
        return int((await conn.execute(select(func.count()).select_from(orders))).scalar_one())

    async def documents(self, conn: AsyncConnection, ids: list[str]) -> dict[str, dict[str, Any]]:
        rows = await conn.execute(
            select(
                orders,
                customers.c.name.label("customer_name"),
                customers.c.email.label("customer_email"),
                customers.c.erased.label("customer_erased"),
            )
            .select_from(orders.join(customers, customers.c.id == orders.c.customer_id))
            .where(orders.c.id.in_(ids))
        )
        docs: dict[str, dict[str, Any]] = {}
        for row in rows:
            docs[row.id] = {
                "id": row.id,
                "version": row.version,
                "status": row.status,
                "currency": row.currency,
                "total": row.total,
                "placed_at": _iso(row.placed_at),
                "paid_at": _iso(row.paid_at),
                "shipped_at": _iso(row.shipped_at),
                "cancelled_at": _iso(row.cancelled_at),
                "updated_at": _iso(row.updated_at),
                "customer": {
                    "id": row.customer_id,
                    "name": row.customer_name,
                    "email": row.customer_email,
                    "erased": row.customer_erased,
                },
                "lines": [],
                "line_count": 0,
            }
        if docs:
            lines = await conn.execute(
                select(order_lines, products.c.name.label("product_name"))
                .select_from(order_lines.join(products, products.c.id == order_lines.c.product_id))
                .where(order_lines.c.order_id.in_(sorted(docs)))
                .order_by(order_lines.c.order_id, order_lines.c.line_no)
            )
            for ln in lines:
                doc = docs[ln.order_id]
                doc["lines"].append(
                    {
                        "product_id": ln.product_id,
                        "sku": ln.sku,
                        "product_name": ln.product_name,
                        "quantity": ln.quantity,
                        "unit_price": ln.unit_price,
                        "amount": ln.quantity * ln.unit_price,
                    }
                )
                doc["line_count"] += 1
        return docs


# An order counts toward "total spent" once it is paid, and stops if cancelled.
_SPENT_STATUSES = ("paid", "shipped")


class CustomersProjection(Projection):
    """Customers with lifetime figures that come from the Order aggregate's events."""

    index = CUSTOMERS
    takes = frozenset({"Customer", "Order"})

    async def project(self, conn: AsyncConnection, events: list[StoredEvent]) -> list[Action]:
        newest = _touched(events, {"Customer"})
        by_order = _touched(events, {"Order"})
        if by_order:
            rows = await conn.execute(
                select(orders.c.id, orders.c.customer_id).where(orders.c.id.in_(sorted(by_order)))
            )
            for order_id, customer_id in rows:
                newest[customer_id] = max(newest.get(customer_id, 0), by_order[order_id])
        return await self._actions(conn, newest)

    async def all_ids(self, conn: AsyncConnection, after: str, limit: int) -> list[str]:
        rows = await conn.execute(
            select(customers.c.id)
            .where(customers.c.id > after)
            .order_by(customers.c.id)
            .limit(limit)
        )
        return list(rows.scalars())

    async def count(self, conn: AsyncConnection) -> int:
        return int((await conn.execute(select(func.count()).select_from(customers))).scalar_one())

    async def documents(self, conn: AsyncConnection, ids: list[str]) -> dict[str, dict[str, Any]]:
        spent = func.coalesce(
            func.sum(orders.c.total).filter(orders.c.status.in_(_SPENT_STATUSES)), 0
        )
        figures = (
            select(
                orders.c.customer_id,
                func.count(orders.c.id).label("order_count"),
                spent.label("total_spent"),
                func.max(orders.c.placed_at).label("last_order_at"),
            )
            .where(orders.c.customer_id.in_(ids))
            .group_by(orders.c.customer_id)
            .subquery()
        )
        rows = await conn.execute(
            select(customers, figures.c.order_count, figures.c.total_spent, figures.c.last_order_at)
            .select_from(
                customers.outerjoin(figures, and_(figures.c.customer_id == customers.c.id))
            )
            .where(customers.c.id.in_(ids))
        )
        return {
            row.id: {
                "id": row.id,
                "version": row.version,
                "name": row.name,
                "name_sort": None if row.name is None else row.name.lower(),
                "email": row.email,
                "erased": row.erased,
                "order_count": row.order_count or 0,
                "total_spent": int(row.total_spent or 0),
                "last_order_at": _iso(row.last_order_at),
                "created_at": _iso(row.created_at),
                "updated_at": _iso(row.updated_at),
            }
            for row in rows
        }


def default_projections() -> list[Projection]:
    return [ProductsProjection(), OrdersProjection(), CustomersProjection()]
