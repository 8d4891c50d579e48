"""The unit of work on SQLAlchemy: one connection, one transaction.

Saves are optimistic: an UPDATE names the version it loaded, and a row that
moved on since makes the whole unit of work fail with a ConcurrencyConflict,
whatever the command expected. The database's constraints (unique sku and
email, reserved within on-hand) stand behind the domain's rules.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain.customer import Customer
from domain.errors import AlreadyExists, ConcurrencyConflict
from domain.order import Order, OrderLine, OrderStatus
from domain.product import Product, ProductStatus
from domain.stock import Stock
from writemodel import outbox
from writemodel.outbox import as_utc
from writemodel.tables import customers, idempotency_keys, order_lines, orders, products, stock
from writemodel.unit_of_work import (
    CustomerRepository,
    IdempotencyRace,
    OrderRepository,
    ProductRepository,
    Remember,
    Remembered,
    StockRepository,
    TransientConflict,
    UnitOfWork,
)

__all__ = ["SqlUnitOfWork"]


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)


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


class SqlProducts(ProductRepository):
    def __init__(self, conn: AsyncConnection) -> None:
        super().__init__()
        self.conn = conn

    async def _load(self, id: str) -> Product | None:
        row = (await self.conn.execute(select(products).where(products.c.id == id))).first()
        return None if row is None else _product(row)

    async def _load_by_sku(self, sku: str) -> Product | None:
        row = (await self.conn.execute(select(products).where(products.c.sku == sku))).first()
        return None if row is None else _product(row)


class SqlStocks(StockRepository):
    def __init__(self, conn: AsyncConnection) -> None:
        super().__init__()
        self.conn = conn

    async def _load(self, id: str) -> Stock | None:
        row = (await self.conn.execute(select(stock).where(stock.c.product_id == id))).first()
        if row is None:
            return None
        return Stock(
            row.product_id,
            row.version,
            on_hand=row.on_hand,
            reserved=row.reserved,
            units_sold=row.units_sold,
        )


class SqlCustomers(CustomerRepository):
    def __init__(self, conn: AsyncConnection) -> None:
        super().__init__()
        self.conn = conn

    async def _load(self, id: str) -> Customer | None:
        row = (await self.conn.execute(select(customers).where(customers.c.id == id))).first()
        if row is None:
            return None
        return Customer(row.id, row.version, email=row.email, name=row.name, erased=row.erased)

    async def email_taken(self, email: str) -> bool:
        if any(c.email == email for c in self.seen.values()):
            return True
        found = await self.conn.execute(select(customers.c.id).where(customers.c.email == email))
        return found.first() is not None


class SqlOrders(OrderRepository):
    def __init__(self, conn: AsyncConnection) -> None:
        super().__init__()
        self.conn = conn

    async def _load(self, id: str) -> Order | None:
        row = (await self.conn.execute(select(orders).where(orders.c.id == id))).first()
        if row is None:
            return None
        lines = await self.conn.execute(
            select(order_lines).where(order_lines.c.order_id == id).order_by(order_lines.c.line_no)
        )
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


class SqlUnitOfWork(UnitOfWork):
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.conn: AsyncConnection | None = None

    async def __aenter__(self) -> SqlUnitOfWork:
        self.conn = await self.engine.connect()
        await self.conn.begin()
        self.products = SqlProducts(self.conn)
        self.stocks = SqlStocks(self.conn)
        self.customers = SqlCustomers(self.conn)
        self.orders = SqlOrders(self.conn)
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        try:
            await self.rollback()
        finally:
            if self.conn is not None:
                await self.conn.close()
                self.conn = None

    @property
    def connection(self) -> AsyncConnection:
        assert self.conn is not None, "use the unit of work inside `async with`"
        return self.conn

    async def commit(
        self, *, correlation_id: str, now: datetime, remember: Remember | None = None
    ) -> int:
        conn = self.connection
        now = now.astimezone(UTC)  # SQLite keeps wall-clock time only: store it as UTC
        try:
            if remember is not None:
                # First, so that a concurrent request with the same key waits here
                # and then fails as an idempotency race, not on a unique sku.
                await self._remember(remember, now)
            for product in _by_id(self.products.seen):
                await self._save(
                    product,
                    products,
                    products.c.id,
                    self.products,
                    {
                        "sku": product.sku,
                        "name": product.name,
                        "description": product.description,
                        "category": product.category,
                        "tags": product.tags,
                        "price": product.price,
                        "currency": product.currency,
                        "status": product.status.value,
                        "created_at": product.created_at or now,
                    },
                    now,
                )
            for item in _by_id(self.stocks.seen):
                await self._save(
                    item,
                    stock,
                    stock.c.product_id,
                    self.stocks,
                    {
                        "on_hand": item.on_hand,
                        "reserved": item.reserved,
                        "units_sold": item.units_sold,
                    },
                    now,
                )
            for customer in _by_id(self.customers.seen):
                await self._save(
                    customer,
                    customers,
                    customers.c.id,
                    self.customers,
                    {
                        "email": customer.email,
                        "name": customer.name,
                        "erased": customer.erased,
                        "created_at": now,
                    },
                    now,
                )
            for order in _by_id(self.orders.seen):
                await self._save(
                    order,
                    orders,
                    orders.c.id,
                    self.orders,
                    {
                        "customer_id": order.customer_id,
                        "status": order.status.value,
                        "currency": order.currency,
                        "total": order.total,
                        "placed_at": order.placed_at or now,
                        "paid_at": order.paid_at,
                        "shipped_at": order.shipped_at,
                        "cancelled_at": order.cancelled_at,
                    },
                    now,
                )
                if order.id in self.orders.new:
                    await conn.execute(
                        insert(order_lines),
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
            # Last, so the outbox append lock is held for as short a time as can be.
            position = await outbox.append(
                conn, self.pending_events(), correlation_id=correlation_id, now=now
            )
            if position is None:
                position, _ = await outbox.head(conn)
            if remember is not None:
                await conn.execute(
                    update(idempotency_keys)
                    .where(idempotency_keys.c.key == remember.key)
                    .values(result={**remember.result, "position": position})
                )
            await conn.commit()
        except IntegrityError as error:
            await conn.rollback()
            raise _integrity_error(error) from error
        except DBAPIError as error:
            await conn.rollback()
            if _lost_race(error):
                raise TransientConflict(str(error.orig).splitlines()[0]) from error
            raise
        for repo in self.repositories():
            for aggregate in repo.seen.values():
                aggregate.pending.clear()
        return position

    async def _save(
        self,
        aggregate: Any,
        table: Any,
        key: Any,
        repo: Any,
        values: dict[str, Any],
        now: datetime,
    ) -> None:
        conn = self.connection
        if aggregate.id in repo.new:
            created = {key.name: aggregate.id, "version": aggregate.version, "updated_at": now}
            await conn.execute(insert(table).values(**created, **values))
            return
        loaded = repo.loaded_versions[aggregate.id]
        if aggregate.version == loaded:
            return  # untouched
        values.pop("created_at", None)
        result = await conn.execute(
            update(table)
            .where(key == aggregate.id, table.c.version == loaded)
            .values(version=aggregate.version, updated_at=now, **values)
        )
        if result.rowcount != 1:
            raise ConcurrencyConflict(type(aggregate).__name__, aggregate.id, loaded, None)

    async def rollback(self) -> None:
        if self.conn is not None and self.conn.in_transaction():
            await self.conn.rollback()

    async def recall(self, key: str, now: datetime) -> Remembered | None:
        row = (
            await self.connection.execute(
                select(idempotency_keys).where(idempotency_keys.c.key == key)
            )
        ).first()
        if row is None or as_utc(row.expires_at) <= now:
            return None
        return Remembered(request_hash=row.request_hash, result=row.result)

    async def _remember(self, remember: Remember, now: datetime) -> None:
        conn = self.connection
        # Expired keys give way, this one included; the index on expires_at keeps it cheap.
        await conn.execute(delete(idempotency_keys).where(idempotency_keys.c.expires_at <= now))
        await conn.execute(
            insert(idempotency_keys).values(
                key=remember.key,
                request_hash=remember.request_hash,
                result=remember.result,
                created_at=now,
                expires_at=remember.expires_at,
            )
        )


def _by_id(seen: dict[str, Any]) -> list[Any]:
    """Aggregates in id order: two commits that touch the same rows lock them in one
    order, so they wait for each other instead of deadlocking."""
    return [seen[id] for id in sorted(seen)]


# PostgreSQL's serialization_failure and deadlock_detected: the transaction lost a
# race and can be run again from the start.
_RETRYABLE_SQLSTATES = {"40001", "40P01"}


def _lost_race(error: DBAPIError) -> bool:
    orig = error.orig
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return code in _RETRYABLE_SQLSTATES


def _integrity_error(error: IntegrityError) -> Exception:
    # Only the first line names the constraint; PostgreSQL's DETAIL line that
    # follows quotes the offending value, which may contain anything.
    headline = str(error.orig).splitlines()[0] if str(error.orig) else ""
    if "uq_products_sku" in headline or "products.sku" in headline:
        return AlreadyExists("a product with this sku exists", field="sku", code="SKU_TAKEN")
    if "uq_customers_email" in headline or "customers.email" in headline:
        return AlreadyExists("a customer with this email exists", field="email", code="EMAIL_TAKEN")
    if "pk_idempotency_keys" in headline or "idempotency_keys.key" in headline:
        return IdempotencyRace()
    return error
