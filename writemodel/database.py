"""The write database's engine, set up for what the outbox needs of it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

__all__ = ["create_engine", "is_postgres"]


def is_postgres(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "postgresql"


# Pooled connections are replaced after this long, before a server or a proxy
# between us would drop them for idleness.
POOL_RECYCLE_SECONDS = 1800


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url)
    # No pool_pre_ping: its SELECT 1 on every checkout cost 0.7-0.9 ms per command.
    # A connection that died in the pool fails its first statement instead; the
    # command service runs that command again (docs/write-side.md, "Lost connections"),
    # and SQLAlchemy then replaces every connection older than the failure.
    return create_async_engine(
        url, pool_size=pool_size, max_overflow=pool_size, pool_recycle=POOL_RECYCLE_SECONDS
    )


def _sqlite_engine(url: str) -> AsyncEngine:
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, connect_args={"timeout": 30})

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the driver, so BEGIN below is ours.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
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
