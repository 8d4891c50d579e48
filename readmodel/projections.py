"""Projections: a batch of outbox events in, whole documents out.

Each projection says which aggregates' events it takes, finds the documents
those events touch, and rebuilds each from the write database's current
state, never by increment. Every document carries, as its Elasticsearch
external version, the position of the newest event that touched it: a replay
or a late duplicate carries an older position and cannot roll it back.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic

from sqlalchemy import Row, Table, and_, func, select
from sqlalchemy.ext.asyncio import AsyncConnection
from typing_extensions import TypeVar

from readmodel.documents import (
    CustomerDocument,
    Document,
    OrderDocument,
    OrderLineDocument,
    ProductDocument,
    customer_document,
    order_document,
    order_line_document,
    product_document,
)
from readmodel.indexes import CUSTOMERS, ORDERS, PRODUCTS, IndexDefinition
from writemodel.outbox import StoredEvent
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

# What a projection's documents are; a projection named without it builds any of them.
D = TypeVar("D", bound=Document, default=Document, covariant=True)


@dataclass(frozen=True)
class IndexDocument:
    id: str
    version: int
    # Any document (readmodel/documents.py) with its position: the bulk body as sent.
    document: dict[str, Any]


@dataclass(frozen=True)
class DeleteDocument:
    id: str
    version: int


Action = IndexDocument | DeleteDocument


def _touched(events: Iterable[StoredEvent], types: set[str]) -> dict[str, int]:
    """aggregate id -> newest position among the events of the given aggregate types."""
    newest: dict[str, int] = {}
    for event in events:
        if event.aggregate_type in types:
            newest[event.aggregate_id] = max(newest.get(event.aggregate_id, 0), event.position)
    return newest


class Projection(ABC, Generic[D]):
    index: IndexDefinition
    # The write-side table with one row per document: a full rebuild lists its ids.
    table: Table
    # Aggregate types whose events this projection takes; others pass it by.
    takes: frozenset[str]

    @property
    def name(self) -> str:
        return self.index.name

    @abstractmethod
    async def project(self, conn: AsyncConnection, events: list[StoredEvent]) -> list[Action]:
        """The documents the events touch, as they now stand in the write database."""

    @abstractmethod
    async def documents(self, conn: AsyncConnection, ids: list[str]) -> Mapping[str, D]:
        """Whole documents for these ids, from current state; absent ids are gone.

        A mutation answers with the same documents (api/mutations/_command.py),
        so its payload's object is the one the read model will hold. One
        statement: that answer reads it without a transaction on PostgreSQL
        (`Bicameral.document`), where one statement sees one snapshot."""

    async def all_ids(self, conn: AsyncConnection, after: str, limit: int) -> list[str]:
        """Document ids in id order, for a full rebuild."""
        id = self.table.c.id
        rows = await conn.execute(select(id).where(id > after).order_by(id).limit(limit))
        return list(rows.scalars())

    async def count(self, conn: AsyncConnection) -> int:
        """How many ids `all_ids` lists in all: a full rebuild's total."""
        return int((await conn.execute(select(func.count()).select_from(self.table))).scalar_one())

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
                actions.append(IndexDocument(id, position, {**doc, "position": position}))
        return actions


class ProductsProjection(Projection[ProductDocument]):
    index = PRODUCTS
    table = products
    takes = frozenset({"Product", "Stock"})

    async def project(self, conn: AsyncConnection, events: list[StoredEvent]) -> list[Action]:
        # Stock is keyed by its product's id: both land on the product's document.
        return await self._actions(conn, _touched(events, {"Product", "Stock"}))

    async def documents(self, conn: AsyncConnection, ids: list[str]) -> dict[str, ProductDocument]:
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
        return {
            row.id: product_document(
                id=row.id,
                version=row.version,
                sku=row.sku,
                name=row.name,
                description=row.description,
                category=row.category,
                tags=row.tags,
                price=row.price,
                currency=row.currency,
                status=row.status,
                created_at=row.created_at,
                updated_at=row.updated_at,
                stock_version=row.stock_version,
                on_hand=row.on_hand,
                reserved=row.reserved,
                units_sold=row.units_sold,
            )
            for row in rows
        }


class OrdersProjection(Projection[OrderDocument]):
    """Orders embed their customer's name and email and each line's product name,
    so a customer's rename or erasure re-projects every order of theirs."""

    index = ORDERS
    table = orders
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

    async def documents(self, conn: AsyncConnection, ids: list[str]) -> dict[str, OrderDocument]:
        # One statement, one row per line: a mutation's answer reads an order
        # back in a single round trip (bench path 3).
        rows = await conn.execute(
            select(
                orders,
                customers.c.name.label("customer_name"),
                customers.c.email.label("customer_email"),
                customers.c.erased.label("customer_erased"),
                order_lines.c.line_no,
                order_lines.c.product_id,
                order_lines.c.sku,
                order_lines.c.quantity,
                order_lines.c.unit_price,
                products.c.name.label("product_name"),
            )
            .select_from(
                orders.join(customers, customers.c.id == orders.c.customer_id)
                .outerjoin(order_lines, order_lines.c.order_id == orders.c.id)
                .outerjoin(products, products.c.id == order_lines.c.product_id)
            )
            .where(orders.c.id.in_(ids))
            .order_by(orders.c.id, order_lines.c.line_no)
        )
        heads: dict[str, Row[Any]] = {}
        lines: dict[str, list[OrderLineDocument]] = {}
        for row in rows:
            heads.setdefault(row.id, row)
            found = lines.setdefault(row.id, [])
            if row.line_no is not None:
                found.append(
                    order_line_document(
                        product_id=row.product_id,
                        sku=row.sku,
                        product_name=row.product_name,
                        quantity=row.quantity,
                        unit_price=row.unit_price,
                    )
                )
        return {
            id: order_document(
                id=row.id,
                version=row.version,
                status=row.status,
                currency=row.currency,
                total=row.total,
                placed_at=row.placed_at,
                paid_at=row.paid_at,
                shipped_at=row.shipped_at,
                cancelled_at=row.cancelled_at,
                updated_at=row.updated_at,
                customer={
                    "id": row.customer_id,
                    "name": row.customer_name,
                    "email": row.customer_email,
                    "erased": row.customer_erased,
                },
                lines=lines[id],
            )
            for id, row in heads.items()
        }


# An order counts toward "total spent" once it is paid, and stops if cancelled.
_SPENT_STATUSES = ("paid", "shipped")


class CustomersProjection(Projection[CustomerDocument]):
    """Customers with lifetime figures that come from the Order aggregate's events."""

    index = CUSTOMERS
    table = customers
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

    async def documents(self, conn: AsyncConnection, ids: list[str]) -> dict[str, CustomerDocument]:
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
            row.id: customer_document(
                id=row.id,
                version=row.version,
                name=row.name,
                email=row.email,
                erased=row.erased,
                order_count=row.order_count,
                total_spent=row.total_spent,
                last_order_at=row.last_order_at,
                created_at=row.created_at,
                updated_at=row.updated_at,
            )
            for row in rows
        }


def default_projections() -> list[Projection]:
    return [ProductsProjection(), OrdersProjection(), CustomersProjection()]
