"""The unit of work on SQLAlchemy: one connection, one transaction.

It orchestrates: each repository (writemodel.sql_repositories) saves what it
handed out, the events go to the outbox, and the command's result is stored
under its idempotency key, all in the transaction `__aenter__` began. Here
live what the repositories share: the SQLite writer gate, and what a failure
of the database means to the caller (a lost race, a taken sku, a connection
that broke before or during COMMIT).
"""

from __future__ import annotations

import asyncio
import weakref
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain.errors import AlreadyExists
from writemodel import outbox
from writemodel.access import Actor
from writemodel.database import as_utc, fault_kind
from writemodel.sql_repositories import (
    SqlCustomers,
    SqlOrders,
    SqlProducts,
    SqlRepository,
    SqlStocks,
)
from writemodel.tables import idempotency_keys
from writemodel.unit_of_work import (
    CommitOutcomeUnknown,
    ConnectionLost,
    IdempotencyRace,
    Remember,
    Remembered,
    TransientConflict,
    UnitOfWork,
    WriteDatabaseUnavailable,
)

__all__ = ["SqlUnitOfWork"]


# The idempotency keys' statements, built once so SQLAlchemy's compiled cache serves them.
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
    products: SqlProducts
    stocks: SqlStocks
    customers: SqlCustomers
    orders: SqlOrders

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
            for repository in self._saving():
                await repository.save(now)
            # Last, so the outbox's announcement holds the feed back (below its
            # bound, until the commit) for as short a time as can be.
            position = await outbox.append(
                conn, self.pending_events(), correlation_id=correlation_id, now=now, actor=actor
            )
            if position is None:
                position, _ = await outbox.head(conn)
            if remember is not None:
                await self._store_result(remember, position)
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

    def _saving(self) -> tuple[SqlRepository[Any], ...]:
        # Tables in this order, rows in id order within each (SqlRepository.save):
        # two commits lock shared rows in one order, so neither deadlocks the other.
        return (self.products, self.stocks, self.customers, self.orders)

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

    async def _store_result(self, remember: Remember, position: int) -> None:
        await self.connection.execute(
            _STORE_RESULT,
            {
                "where_scope": remember.scope,
                "where_key": remember.key,
                "result": {**remember.result, "position": position},
            },
        )


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
