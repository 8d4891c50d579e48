"""The unit of work on SQLAlchemy: one connection, one transaction.

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

import asyncio
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Column,
    Insert,
    Select,
    Table,
    Update,
    bindparam,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Engine, Row
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain.customer import Customer
from domain.errors import AlreadyExists, ConcurrencyConflict
from domain.order import Order, OrderLine, OrderStatus
from domain.product import Product, ProductStatus
from domain.stock import Stock
from writemodel import outbox
from writemodel.access import Actor
from writemodel.database import fault_kind
from writemodel.outbox import as_utc
from writemodel.tables import customers, idempotency_keys, order_lines, orders, products, stock
from writemodel.unit_of_work import (
    CommitOutcomeUnknown,
    ConnectionLost,
    CustomerRepository,
    IdempotencyRace,
    OrderRepository,
    ProductRepository,
    Remember,
    Remembered,
    StockRepository,
    TransientConflict,
    UnitOfWork,
    WriteDatabaseUnavailable,
)

__all__ = ["SqlUnitOfWork"]


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)


# --- statements, built once (see above) ---

_PRODUCT_BY_ID = select(products).where(products.c.id == bindparam("id"))
_PRODUCT_BY_SKU = select(products).where(products.c.sku == bindparam("sku"))
_STOCK_BY_ID = select(stock).where(stock.c.product_id == bindparam("id"))
_CUSTOMER_BY_ID = select(customers).where(customers.c.id == bindparam("id"))
_CUSTOMER_BY_EMAIL = select(customers.c.id).where(customers.c.email == bindparam("email"))
_ORDER_BY_ID = select(orders).where(orders.c.id == bindparam("id"))
_ORDER_LINES = (
    select(order_lines)
    .where(order_lines.c.order_id == bindparam("id"))
    .order_by(order_lines.c.line_no)
)
_INSERT_ORDER_LINES = insert(order_lines)
_KEY = select(idempotency_keys).where(
    idempotency_keys.c.scope == bindparam("scope"), idempotency_keys.c.key == bindparam("key")
)
_DELETE_EXPIRED_KEYS = delete(idempotency_keys).where(
    idempotency_keys.c.expires_at <= bindparam("now")
)
_INSERT_KEY = insert(idempotency_keys)
# A column's own name is reserved for its SET value, hence `where_` for the WHERE.
_STORE_RESULT = update(idempotency_keys).where(
    idempotency_keys.c.scope == bindparam("where_scope"),
    idempotency_keys.c.key == bindparam("where_key"),
)


@dataclass(frozen=True)
class _Saves:
    """How one aggregate table is written: an INSERT of a new row, and an UPDATE
    guarded by the version the unit of work loaded. Which columns they set comes
    from the values they are executed with."""

    key: str
    insert: Insert
    update: Update
    # The row's version now: what a guarded UPDATE that matched nothing ran into.
    version: Select[int]


def _saves(table: Table, key: Column[str]) -> _Saves:
    guarded = update(table).where(
        key == bindparam("where_key"), table.c.version == bindparam("where_version")
    )
    version = select(table.c.version).where(key == bindparam("where_key"))
    return _Saves(key.name, insert(table), guarded, version)


_SAVES = {
    products: _saves(products, products.c.id),
    stock: _saves(stock, stock.c.product_id),
    customers: _saves(customers, customers.c.id),
    orders: _saves(orders, orders.c.id),
}


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
        row = (await self.conn.execute(_PRODUCT_BY_ID, {"id": id})).first()
        return None if row is None else _product(row)

    async def _load_by_sku(self, sku: str) -> Product | None:
        row = (await self.conn.execute(_PRODUCT_BY_SKU, {"sku": sku})).first()
        return None if row is None else _product(row)


class SqlStocks(StockRepository):
    def __init__(self, conn: AsyncConnection) -> None:
        super().__init__()
        self.conn = conn

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


class SqlCustomers(CustomerRepository):
    def __init__(self, conn: AsyncConnection) -> None:
        super().__init__()
        self.conn = conn

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


class SqlOrders(OrderRepository):
    def __init__(self, conn: AsyncConnection) -> None:
        super().__init__()
        self.conn = conn

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


# SQLite has one writer at a time. Commands of one process queue for it here, in
# order and holding nothing, rather than each taking a pooled connection and
# sleeping in SQLite's busy handler until the write lock comes free: sixteen
# concurrent writers then held the whole pool and a seventeenth request timed out
# waiting for a connection. Other processes still meet the busy timeout.
_SQLITE_WRITERS: weakref.WeakKeyDictionary[Engine, asyncio.Lock] = weakref.WeakKeyDictionary()


def _writer_gate(engine: AsyncEngine) -> asyncio.Lock | None:
    if engine.dialect.name != "sqlite":
        return None
    return _SQLITE_WRITERS.setdefault(engine.sync_engine, asyncio.Lock())


class SqlUnitOfWork(UnitOfWork):
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.conn: AsyncConnection | None = None
        self._gate = _writer_gate(engine)
        self._holding = False

    async def __aenter__(self) -> SqlUnitOfWork:
        if self._gate is not None:
            await self._gate.acquire()
            self._holding = True
        try:
            await self._open()
        except BaseException:
            self._release()
            raise
        return self

    def _release(self) -> None:
        if self._gate is not None and self._holding:
            self._holding = False
            self._gate.release()

    async def _open(self) -> None:
        try:
            self.conn = await self.engine.connect()
        except Exception as error:
            # Refused, shutting down, starting up, no pooled connection came free:
            # nothing was sent, and trying again at once would not help.
            if fault_kind(error) is None:
                raise
            raise WriteDatabaseUnavailable(_describe(error)) from error
        try:
            await self.conn.begin()  # on SQLite, BEGIN IMMEDIATE may time out
        except BaseException as error:
            await self._close()
            if isinstance(error, Exception) and (meant := _before_commit(error)):
                raise meant from error
            raise
        self.products = SqlProducts(self.conn)
        self.stocks = SqlStocks(self.conn)
        self.customers = SqlCustomers(self.conn)
        self.orders = SqlOrders(self.conn)

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        try:
            await self.rollback()
        except Exception:
            if exc is None:
                raise
            # A failed ROLLBACK must not hide the error that brought us here.
        finally:
            try:
                await self._close()
            finally:
                self._release()
        # The handler's loads run on this connection too, outside `commit`; a broken
        # connection or a timeout surfaces from them here, and COMMIT was never sent.
        meant = _before_commit(exc) if isinstance(exc, Exception) else None
        if meant is not None and not isinstance(exc, _REPORTED):
            raise meant from exc

    async def _close(self) -> None:
        if self.conn is not None:
            conn, self.conn = self.conn, None
            try:
                await conn.close()
            except Exception as error:
                # A connection that broke is invalidated and dropped from the pool.
                if fault_kind(error) is None:
                    raise

    @property
    def connection(self) -> AsyncConnection:
        assert self.conn is not None, "use the unit of work inside `async with`"
        return self.conn

    async def commit(
        self,
        *,
        correlation_id: str,
        now: datetime,
        actor: Actor,
        remember: Remember | None = None,
    ) -> int:
        conn = self.connection
        now = now.astimezone(UTC)  # SQLite keeps wall-clock time only: store it as UTC
        committing = False
        try:
            if remember is not None:
                # First, so that a concurrent request with the same key waits here
                # and then fails as an idempotency race, not on a unique sku.
                await self._remember(remember, now)
            for product in _by_id(self.products.seen):
                await self._save(
                    product,
                    products,
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
                    self.customers,
                    {
                        "email": customer.email,
                        "name": customer.name,
                        "erased": customer.erased,
                        "created_at": now,
                    },
                    now,
                )
            for customer_id in self.erased_customers():
                await outbox.forget(conn, "Customer", customer_id)
            for order in _by_id(self.orders.seen):
                await self._save(
                    order,
                    orders,
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
            # Last, so the outbox append lock is held for as short a time as can be.
            position = await outbox.append(
                conn, self.pending_events(), correlation_id=correlation_id, now=now, actor=actor
            )
            if position is None:
                position, _ = await outbox.head(conn)
            if remember is not None:
                await conn.execute(
                    _STORE_RESULT,
                    {
                        "where_scope": remember.scope,
                        "where_key": remember.key,
                        "result": {**remember.result, "position": position},
                    },
                )
            committing = True
            await conn.commit()
        except IntegrityError as error:
            await self.rollback()
            raise _integrity_error(error, self._new_skus()) from error
        except Exception as error:
            kind = fault_kind(error)
            try:
                await self.rollback()
            except Exception:
                if kind is None:
                    raise
            if isinstance(error, DBAPIError) and _lost_race(error):
                raise TransientConflict(_headline(error)) from error
            if kind == "lost" and committing:
                # Before COMMIT went out, the server rolls the transaction back when
                # the connection goes. While it was in flight, the server may have
                # committed and the answer been lost on the way.
                raise CommitOutcomeUnknown(_describe(error)) from error
            if meant := _before_commit(error):
                # Lost before COMMIT, or a refusal the server answered (a timeout,
                # a lock): the transaction is rolled back.
                raise meant from error
            raise
        for repo in self.repositories():
            for aggregate in repo.seen.values():
                aggregate.pending.clear()
        return position

    async def _save(
        self,
        aggregate: Any,
        table: Table,
        repo: Any,
        values: dict[str, Any],
        now: datetime,
    ) -> None:
        conn = self.connection
        saves = _SAVES[table]
        if aggregate.id in repo.new:
            created = {saves.key: aggregate.id, "version": aggregate.version, "updated_at": now}
            await conn.execute(saves.insert, {**created, **values})
            return
        loaded = repo.loaded_versions[aggregate.id]
        if aggregate.version == loaded:
            return  # untouched
        values.pop("created_at", None)
        result = await conn.execute(
            saves.update,
            {
                "where_key": aggregate.id,
                "where_version": loaded,
                "version": aggregate.version,
                "updated_at": now,
                **values,
            },
        )
        if result.rowcount != 1:
            # Another transaction committed a newer version first. Each statement
            # reads what is committed by its start (READ COMMITTED; on SQLite the
            # write lock makes this unreachable), so this one sees that version;
            # None only if the row is gone, which no command does.
            actual = (await conn.execute(saves.version, {"where_key": aggregate.id})).scalar()
            raise ConcurrencyConflict(type(aggregate).__name__, aggregate.id, loaded, actual)

    def _new_skus(self) -> set[str]:
        return {self.products.seen[id].sku for id in self.products.new}

    async def rollback(self) -> None:
        if self.conn is not None and self.conn.in_transaction():
            try:
                await self.conn.rollback()
            except DBAPIError as error:
                # The server drops a broken connection's transaction itself; a failed
                # ROLLBACK must not hide the error that brought us here.
                if not error.connection_invalidated:
                    raise

    async def recall(self, scope: str, key: str, now: datetime) -> Remembered | None:
        row = (await self.connection.execute(_KEY, {"scope": scope, "key": key})).first()
        if row is None or as_utc(row.expires_at) <= now:
            return None
        return Remembered(request_hash=row.request_hash, result=row.result)

    async def _remember(self, remember: Remember, now: datetime) -> None:
        conn = self.connection
        # Expired keys give way, this one included; the index on expires_at keeps it cheap.
        await conn.execute(_DELETE_EXPIRED_KEYS, {"now": now})
        await conn.execute(
            _INSERT_KEY,
            {
                "scope": remember.scope,
                "key": remember.key,
                "request_hash": remember.request_hash,
                "result": remember.result,
                "created_at": now,
                "expires_at": remember.expires_at,
            },
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


# Errors the unit of work has already said what they mean.
_REPORTED = (WriteDatabaseUnavailable, CommitOutcomeUnknown, TransientConflict, IdempotencyRace)


def _before_commit(error: Exception) -> WriteDatabaseUnavailable | None:
    """What a database failure before COMMIT was sent means (nothing was written);
    None when `error` is not the database failing."""
    kind = fault_kind(error)
    if kind == "lost":
        return ConnectionLost(_describe(error))  # a new connection may do
    if kind == "unavailable":
        return WriteDatabaseUnavailable(_describe(error))
    return None


def _describe(error: BaseException) -> str:
    # The driver's first line: enough to log, never a query's values.
    text = str(getattr(error, "orig", None) or error) or type(error).__name__
    return text.splitlines()[0]


def _headline(error: DBAPIError) -> str:
    # Only the first line names the constraint; PostgreSQL's DETAIL line that
    # follows quotes the offending value, which may contain anything.
    return str(error.orig).splitlines()[0] if str(error.orig) else ""


def _integrity_error(error: IntegrityError, new_skus: set[str]) -> Exception:
    headline = _headline(error)
    if "uq_products_sku" in headline or "products.sku" in headline:
        # A sku never changes, so only a new product can collide: name its sku when
        # there is one, as the client who sent it expects to read.
        sku = f"sku {next(iter(new_skus))}" if len(new_skus) == 1 else "this sku"
        return AlreadyExists(f"a product with {sku} exists", field="sku", code="SKU_TAKEN")
    if "uq_customers_email" in headline or "customers.email" in headline:
        return AlreadyExists("a customer with this email exists", field="email", code="EMAIL_TAKEN")
    if "pk_idempotency_keys" in headline or "idempotency_keys.scope" in headline:
        return IdempotencyRace()
    if "pk_customers" in headline or "customers.id" in headline:
        # Only a customer registering themself names the new id: two such requests
        # raced, and the other one registered them.
        return AlreadyExists("you are registered already", code="ALREADY_REGISTERED")
    return error
