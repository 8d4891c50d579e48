"""The transactional outbox: events appended in the command's own transaction,
and read back by the feed in an order that never skips one.

Gap safety. A reader that asks for `position > last` must never see position
N+1 committed while N is still to come. On PostgreSQL a sequence value is
taken at insert and becomes visible at commit, so two writers can commit out
of order. We serialise the *append* instead: each transaction takes one
transaction-scoped advisory lock right before it inserts its events and holds
it until it commits or rolls back. Positions are therefore drawn and made
visible in the same order, and the plain `position > last` read is safe by
construction. The cost: event-writing transactions serialise over the short
stretch from their first event insert to their commit (state updates before
it still run in parallel). On SQLite the database write lock, taken at BEGIN
IMMEDIATE, gives the same order for free.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.events import Event
from writemodel.access import Actor
from writemodel.database import as_utc
from writemodel.tables import events

__all__ = ["NOTIFY_CHANNEL", "StoredEvent", "append", "forget", "head", "read_after"]

# Any fixed 64-bit key; it names "the outbox append lock" for this database.
_APPEND_LOCK_KEY = 0x0B1CA3E1
NOTIFY_CHANNEL = "bicameral_outbox"

# The append's statements, built once so SQLAlchemy's compiled cache serves them.
# PostgreSQL: the lock, and the NOTIFY that wakes the feed, in one round trip. A
# NOTIFY is delivered at commit (never for a rollback) whenever it was sent; it
# is a wake-up, not the data, so it carries no payload.
_TAKE_APPEND_LOCK = select(
    func.pg_advisory_xact_lock(_APPEND_LOCK_KEY), func.pg_notify(NOTIFY_CHANNEL, "")
)
_APPEND = insert(events).returning(events.c.position)
_APPEND_IN_ORDER = insert(events).returning(events.c.position, sort_by_parameter_order=True)
_FORGET = (
    update(events)
    .where(
        events.c.aggregate_type == bindparam("where_type"),
        events.c.aggregate_id == bindparam("where_id"),
    )
    .values(payload={})
)


@dataclass(frozen=True)
class StoredEvent:
    position: int
    aggregate_type: str
    aggregate_id: str
    aggregate_version: int
    event_type: str
    payload: dict[str, Any]
    occurred_at: datetime
    correlation_id: str
    # Who caused it (the audit): None for events written before actors were recorded.
    actor_role: str | None = None
    actor_subject: str | None = None


async def append(
    conn: AsyncConnection,
    recorded: Sequence[tuple[int, Event]],
    *,
    correlation_id: str,
    now: datetime,
    actor: Actor,
) -> int | None:
    """Append events in the caller's transaction; return the last position.

    Each event is stored with its actor's role and subject: "who changed this
    price" is a query over the outbox. The subject is the token's `sub`, an
    opaque id, so it stays when a customer is erased (the erasure's own event
    names them too): the audit keeps who did what, not their personal data."""
    if not recorded:
        return None
    now = now.astimezone(UTC)  # SQLite keeps wall-clock time only: store it as UTC
    postgres = conn.dialect.name == "postgresql"
    if postgres:
        await conn.execute(_TAKE_APPEND_LOCK)
    rows = [
        {
            "aggregate_type": event.aggregate_type,
            "aggregate_id": event.aggregate_id,
            "aggregate_version": version,
            "event_type": event.event_type,
            "payload": event.payload(),
            "occurred_at": now,
            "correlation_id": correlation_id,
            "actor_role": actor.role,
            "actor_subject": actor.subject,
        }
        for version, event in recorded
    ]
    # One INSERT for all of them: SQLAlchemy's "insertmanyvalues" sends the rows
    # as a single multi-row statement. Positions must follow the order the events
    # were recorded in. On PostgreSQL, sort_by_parameter_order makes it an
    # INSERT ... SELECT ... ORDER BY, which draws identity values in that order
    # (what SQLAlchemy relies on to match RETURNING rows to parameters). SQLite
    # inserts VALUES rows one after the other, each taking the next rowid, under
    # the write lock of BEGIN IMMEDIATE. RETURNING's own row order is promised by
    # neither, so the last position is the largest, not the last row.
    result = await conn.execute(_APPEND_IN_ORDER if postgres else _APPEND, rows)
    last: int = max(result.scalars())
    return last


async def forget(conn: AsyncConnection, aggregate_type: str, aggregate_id: str) -> None:
    """Empty the payloads of an aggregate's stored events, in the caller's transaction.

    Erasing a customer calls it before the erasure's own event is appended: their
    registration's email and name leave the outbox with the row's, and what stays
    is the fact (type, id, version, time, actor) of every event. Nothing reads an
    old payload back (projections build documents from the tables; the feed reads
    headers), so the read side is unchanged."""
    await conn.execute(_FORGET, {"where_type": aggregate_type, "where_id": aggregate_id})


# Every column but the payload: what the feed and the change hub need of an event.
_HEADERS = [c for c in events.c if c.name != "payload"]


async def read_after(
    conn: AsyncConnection, position: int, limit: int, *, payload: bool = True
) -> list[StoredEvent]:
    """Events after `position`, at most `limit`, in position order; gap-safe (see above).

    With `payload=False` the payloads are neither read nor decoded (each
    event's `payload` is then empty): readers that go by the event's type and
    aggregate, as the feed does, skip the largest column.
    """
    columns = events.c if payload else _HEADERS
    result = await conn.execute(
        select(*columns)
        .where(events.c.position > position)
        .order_by(events.c.position)
        .limit(limit)
    )
    return [
        StoredEvent(
            position=row.position,
            aggregate_type=row.aggregate_type,
            aggregate_id=row.aggregate_id,
            aggregate_version=row.aggregate_version,
            event_type=row.event_type,
            payload=row.payload if payload else {},
            occurred_at=as_utc(row.occurred_at),
            correlation_id=row.correlation_id,
            actor_role=row.actor_role,
            actor_subject=row.actor_subject,
        )
        for row in result
    ]


async def head(conn: AsyncConnection) -> tuple[int, datetime | None]:
    """The newest committed position and its time (0, None on an empty outbox)."""
    row = (
        await conn.execute(
            select(events.c.position, events.c.occurred_at)
            .order_by(events.c.position.desc())
            .limit(1)
        )
    ).first()
    if row is None:
        return 0, None
    return row.position, as_utc(row.occurred_at)
