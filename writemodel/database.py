"""The write database's engine, set up for what the outbox needs of it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

__all__ = [
    "POOL_TIMEOUT_SECONDS",
    "as_utc",
    "create_engine",
    "fault_kind",
    "is_database_fault",
    "is_postgres",
    "read_only",
]


def is_postgres(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "postgresql"


# Pooled connections are replaced after this long, before a server or a proxy
# between us would drop them for idleness.
POOL_RECYCLE_SECONDS = 1800

# How long a request waits for a pooled connection before it is told the write
# database is unavailable (SQLAlchemy's default is 30 s): a saturated pool should
# fail a request fast and clearly, not hold it, and everyone behind it, for half
# a minute.
POOL_TIMEOUT_SECONDS = 5.0

# How long SQLite waits for the write lock before it gives up ("database is
# locked"); the command then fails as WRITE_DATABASE_UNAVAILABLE.
SQLITE_BUSY_SECONDS = 30


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url)
    # No pool_pre_ping: its SELECT 1 on every checkout cost 0.7-0.9 ms per command.
    # A connection that died in the pool fails its first statement instead; the
    # command service runs that command again (docs/write-side.md, "Lost connections"),
    # and SQLAlchemy then replaces every connection older than the failure.
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=POOL_RECYCLE_SECONDS,
        pool_timeout=POOL_TIMEOUT_SECONDS,
    )


def _sqlite_engine(url: str) -> AsyncEngine:
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(
        url, connect_args={"timeout": SQLITE_BUSY_SECONDS}, pool_timeout=POOL_TIMEOUT_SECONDS
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the driver, so BEGIN below is ours.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_SECONDS * 1000}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Writers take the write lock up front (BEGIN IMMEDIATE): a deferred
        # transaction that upgrades later can fail with SQLITE_BUSY at once,
        # and holding the lock from the start is what makes outbox positions
        # commit in order. Readers ask for a plain deferred BEGIN.
        if conn.get_execution_options().get("sqlite_readonly"):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


@contextlib.asynccontextmanager
async def read_only(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A pooled connection for reading. On SQLite its transaction opens with a
    plain deferred BEGIN instead of the writers' BEGIN IMMEDIATE (see
    `_on_begin`), so a read neither takes the write lock nor queues behind a
    writer; on PostgreSQL it is an ordinary connection."""
    async with engine.connect() as conn:
        yield await conn.execution_options(sqlite_readonly=True)


def as_utc(value: datetime) -> datetime:
    """SQLite hands datetimes back naive; every time we store is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# --- what a failure of the write database means -------------------------------

# SQLSTATEs of a connection that is gone or going: class 08 (connection
# exception), admin_shutdown, crash_shutdown, cannot_connect_now (the server is
# starting or shutting down), idle_in_transaction_session_timeout.
_LOST_STATES = {"57P01", "57P02", "57P03", "25P03"}
# The server refused or gave up on the work, the connection still usable:
# query_canceled (a statement_timeout too), lock_not_available, and class 53
# (insufficient resources: too many connections, out of memory, disk full).
_REFUSED_STATES = {"57014", "55P03"}


def fault_kind(error: BaseException) -> Literal["lost", "unavailable"] | None:
    """Whether `error` is the write database failing rather than the statement being
    wrong: "lost" when the connection broke (or could not be made), "unavailable"
    when the database refused or timed out with the connection intact, None for
    anything else (a constraint, a bug), which must not be mistaken for an outage.
    """
    lost = unavailable = False
    for link in _chain(error):
        state = getattr(link, "sqlstate", None) or getattr(link, "pgcode", None)
        if isinstance(state, str):
            if state.startswith("08") or state in _LOST_STATES:
                lost = True
            elif state.startswith("53") or state in _REFUSED_STATES:
                unavailable = True
            else:
                return None  # the server answered with an error of another kind
        if isinstance(link, sa_exc.DBAPIError) and link.connection_invalidated:
            lost = True
        elif isinstance(link, sa_exc.TimeoutError):  # no pooled connection came free
            unavailable = True
        elif (
            # refused, reset, unreachable; a connect that did not finish; a driver's
            # closed connection
            isinstance(link, OSError | EOFError | TimeoutError)
            or type(link).__name__ in _DRIVER_LOST
            or _closed(link)
        ):
            lost = True
        elif isinstance(link, sa_exc.OperationalError) and _sqlite_busy(link):
            unavailable = True
    if lost:
        return "lost"
    return "unavailable" if unavailable else None


def is_database_fault(error: BaseException) -> bool:
    return fault_kind(error) is not None


# asyncpg's and the adapters' names for a connection that is closed or closing.
_DRIVER_LOST = {"ConnectionDoesNotExistError", "ConnectionFailureError"}


def _closed(error: BaseException) -> bool:
    # asyncpg's InterfaceError also says "another operation is in progress" (a
    # bug of ours, not an outage); only its closed-connection kind is a fault.
    return type(error).__name__ == "InterfaceError" and "closed" in str(error).lower()


def _sqlite_busy(error: sa_exc.OperationalError) -> bool:
    message = str(error.orig).lower()
    return "database is locked" in message or "database is busy" in message


def _chain(error: BaseException) -> Iterator[BaseException]:
    """The error, what SQLAlchemy wrapped (`orig`) and its causes."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [error]
    while todo:
        link = todo.pop(0)
        if link is None or id(link) in seen:
            continue
        seen.add(id(link))
        yield link
        # Not __context__: an error raised while handling another is not caused by it.
        todo += [getattr(link, "orig", None), link.__cause__]
