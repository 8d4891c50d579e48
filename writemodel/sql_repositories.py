"""The aggregates' repositories on SQLAlchemy: each maps its rows both ways.

A repository loads rows into an aggregate (`_load`) and writes the aggregates
it handed out back as rows (`save`), side by side, so a table's columns are
named in one class. The unit of work only orchestrates: it calls `save` on each
repository, in one transaction, then appends the events.

Saves are optimistic: an UPDATE names the version it loaded, and a row that
moved on since makes the whole unit of work fail with a ConcurrencyConflict,
whatever the command expected. The database's constraints (unique sku and
email, reserved within on-hand) stand behind the domain's rules; the unique
sku is the only check that a new product's sku is free.

Every statement is built once, at import, with bound parameters for what
varies, and executed with plain values: SQLAlchemy compiles it once and finds
it in its cache ever after, where a statement rebuilt with `.values(...)` for
each row would be built, and its cache key computed, on every command.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, TypeVar

from sqlalchemy import Column, Insert, Select, Table, Update, bindparam, insert, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.aggregate import Aggregate
from domain.customer import Customer
from domain.errors import ConcurrencyConflict
from domain.order import Order, OrderLine, OrderStatus
from domain.product import Product, ProductStatus
from domain.stock import Stock
from writemodel import outbox
from writemodel.database import as_utc
from writemodel.tables import customers, order_lines, orders, products, stock
from writemodel.unit_of_work import (
    CustomerRepository,
    OrderRepository,
    ProductRepository,
    Repository,
    StockRepository,
)

__all__ = ["SqlCustomers", "SqlOrders", "SqlProducts", "SqlRepository", "SqlStocks"]

A = TypeVar("A", bound=Aggregate)


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)


@dataclass(frozen=True)
class _Saves:
    """How one aggregate table is written: an INSERT of a new row, and an UPDATE
    guarded by the version the unit of work loaded. Which columns they set comes
    from the values they are executed with."""

    key: str
    insert: Insert
    # A column's own name is reserved for its SET value, hence `where_` for the WHERE.
    update: Update
    # The row's version now: what a guarded UPDATE that matched nothing ran into.
    version: Select[int]

    @classmethod
    def of(cls, table: Table, key: Column[str]) -> _Saves:
        guarded = update(table).where(
            key == bindparam("where_key"), table.c.version == bindparam("where_version")
        )
        version = select(table.c.version).where(key == bindparam("where_key"))
        return cls(key.name, insert(table), guarded, version)


class SqlRepository(Repository[A]):
    """A repository over one connection: it loads rows into aggregates and saves
    the aggregates it handed out, in the unit of work's transaction."""

    _saves: ClassVar[_Saves]

    def __init__(self, conn: AsyncConnection) -> None:
        super().__init__()
        self.conn = conn

    async def save(self, now: datetime) -> None:
        """Write every new or changed aggregate, in id order: two commits that touch
        the same rows lock them in one order, so they wait for each other instead
        of deadlocking (PostgreSQL)."""
        for id in sorted(self.seen):
            await self._save(self.seen[id], now)

    async def _save(self, aggregate: A, now: datetime) -> None:
        saves = self._saves
        if aggregate.id in self.new:
            await self.conn.execute(
                saves.insert,
                {
                    saves.key: aggregate.id,
                    "version": aggregate.version,
                    "updated_at": now,
                    **self._created(aggregate, now),
                    **self._columns(aggregate, now),
                },
            )
            await self._inserted(aggregate)
            return
        loaded = self.loaded_versions[aggregate.id]
        if aggregate.version == loaded:
            return  # untouched
        result = await self.conn.execute(
            saves.update,
            {
                "where_key": aggregate.id,
                "where_version": loaded,
                "version": aggregate.version,
                "updated_at": now,
                **self._columns(aggregate, now),
            },
        )
        if result.rowcount != 1:
            # Another transaction committed a newer version first. Each statement
            # reads what is committed by its start (READ COMMITTED; on SQLite the
            # write lock makes this unreachable), so this one sees that version;
            # None only if the row is gone, which no command does.
            actual = (await self.conn.execute(saves.version, {"where_key": aggregate.id})).scalar()
            raise ConcurrencyConflict(type(aggregate).__name__, aggregate.id, loaded, actual)

    @abstractmethod
    def _columns(self, aggregate: A, now: datetime) -> dict[str, Any]:
        """The row's columns from the aggregate, for an INSERT and an UPDATE alike
        (the key, version and updated_at aside)."""

    def _created(self, aggregate: A, now: datetime) -> dict[str, Any]:
        """Columns written once, when the row is inserted."""
        return {}

    async def _inserted(self, aggregate: A) -> None:
        """Rows that belong to a new aggregate's row, written right after it."""


# --- products ---

_PRODUCT_BY_ID = select(products).where(products.c.id == bindparam("id"))
_PRODUCT_BY_SKU = select(products).where(products.c.sku == bindparam("sku"))


def _product(row: Row[Any]) -> Product:
    return Product(
        row.id,
        row.version,
        sku=row.sku,
        name=row.name,
        description=row.description,
        category=row.category,
        tags=list(row.tags),
        price=row.price,
        currency=row.currency,
        status=ProductStatus(row.status),
        created_at=_utc(row.created_at),
    )


class SqlProducts(SqlRepository[Product], ProductRepository):
    _saves = _Saves.of(products, products.c.id)

    async def _load(self, id: str) -> Product | None:
        row = (await self.conn.execute(_PRODUCT_BY_ID, {"id": id})).first()
        return None if row is None else _product(row)

    async def _load_by_sku(self, sku: str) -> Product | None:
        row = (await self.conn.execute(_PRODUCT_BY_SKU, {"sku": sku})).first()
        return None if row is None else _product(row)

    def _columns(self, product: Product, now: datetime) -> dict[str, Any]:
        return {
            "sku": product.sku,
            "name": product.name,
            "description": product.description,
            "category": product.category,
            "tags": product.tags,
            "price": product.price,
            "currency": product.currency,
            "status": product.status.value,
        }

    def _created(self, product: Product, now: datetime) -> dict[str, Any]:
        return {"created_at": product.created_at or now}


# --- stock ---

_STOCK_BY_ID = select(stock).where(stock.c.product_id == bindparam("id"))


class SqlStocks(SqlRepository[Stock], StockRepository):
    _saves = _Saves.of(stock, stock.c.product_id)

    async def _load(self, id: str) -> Stock | None:
        row = (await self.conn.execute(_STOCK_BY_ID, {"id": id})).first()
        if row is None:
            return None
        return Stock(
            row.product_id,
            row.version,
            on_hand=row.on_hand,
            reserved=row.reserved,
            units_sold=row.units_sold,
        )

    def _columns(self, item: Stock, now: datetime) -> dict[str, Any]:
        return {"on_hand": item.on_hand, "reserved": item.reserved, "units_sold": item.units_sold}


# --- customers ---

_CUSTOMER_BY_ID = select(customers).where(customers.c.id == bindparam("id"))
_CUSTOMER_BY_EMAIL = select(customers.c.id).where(customers.c.email == bindparam("email"))


class SqlCustomers(SqlRepository[Customer], CustomerRepository):
    _saves = _Saves.of(customers, customers.c.id)

    async def _load(self, id: str) -> Customer | None:
        row = (await self.conn.execute(_CUSTOMER_BY_ID, {"id": id})).first()
        if row is None:
            return None
        return Customer(row.id, row.version, email=row.email, name=row.name, erased=row.erased)

    async def email_taken(self, email: str) -> bool:
        if any(c.email == email for c in self.seen.values()):
            return True
        found = await self.conn.execute(_CUSTOMER_BY_EMAIL, {"email": email})
        return found.first() is not None

    async def save(self, now: datetime) -> None:
        await super().save(now)
        # An erased customer's personal data leaves their stored events too, in the
        # same transaction as their row's.
        for customer_id in self.erased():
            await outbox.forget(self.conn, "Customer", customer_id)

    def _columns(self, customer: Customer, now: datetime) -> dict[str, Any]:
        return {"email": customer.email, "name": customer.name, "erased": customer.erased}

    def _created(self, customer: Customer, now: datetime) -> dict[str, Any]:
        return {"created_at": now}


# --- orders ---

_ORDER_BY_ID = select(orders).where(orders.c.id == bindparam("id"))
_ORDER_LINES = (
    select(order_lines)
    .where(order_lines.c.order_id == bindparam("id"))
    .order_by(order_lines.c.line_no)
)
_INSERT_ORDER_LINES = insert(order_lines)


class SqlOrders(SqlRepository[Order], OrderRepository):
    _saves = _Saves.of(orders, orders.c.id)

    async def _load(self, id: str) -> Order | None:
        row = (await self.conn.execute(_ORDER_BY_ID, {"id": id})).first()
        if row is None:
            return None
        lines = await self.conn.execute(_ORDER_LINES, {"id": id})
        return Order(
            row.id,
            row.version,
            customer_id=row.customer_id,
            lines=[
                OrderLine(
                    product_id=ln.product_id,
                    sku=ln.sku,
                    quantity=ln.quantity,
                    unit_price=ln.unit_price,
                )
                for ln in lines
            ],
            currency=row.currency,
            status=OrderStatus(row.status),
            placed_at=_utc(row.placed_at),
            paid_at=_utc(row.paid_at),
            shipped_at=_utc(row.shipped_at),
            cancelled_at=_utc(row.cancelled_at),
        )

    def _columns(self, order: Order, now: datetime) -> dict[str, Any]:
        return {
            "customer_id": order.customer_id,
            "status": order.status.value,
            "currency": order.currency,
            "total": order.total,
            "placed_at": order.placed_at or now,
            "paid_at": order.paid_at,
            "shipped_at": order.shipped_at,
            "cancelled_at": order.cancelled_at,
        }

    async def _inserted(self, order: Order) -> None:
        # An order's lines never change: they are written with the order, once.
        await self.conn.execute(
            _INSERT_ORDER_LINES,
            [
                {
                    "order_id": order.id,
                    "line_no": i,
                    "product_id": ln.product_id,
                    "sku": ln.sku,
                    "quantity": ln.quantity,
                    "unit_price": ln.unit_price,
                }
                for i, ln in enumerate(order.lines)
            ],
        )
