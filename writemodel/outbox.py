"""The transactional outbox: events appended in the command's own transaction,
and read back by the feed in an order that never skips one.

Gap safety. A reader that asks for `position > last` must never see position
N+1 committed while N is still to come. On PostgreSQL a position is drawn
from the identity sequence at insert and becomes visible at commit, so
writers commit out of position order; we let them (no writer waits for
another) and make the *reader* stop below every position that may still
commit. A position keeps its one meaning everywhere: the order of the feed,
a checkpoint, a consistency token, a subscription cursor, the external
version of a document.

The announcement (writer). Right before its events' INSERT, each transaction
reads the sequence's last value `b` and takes a *shared*, transaction-scoped
advisory lock keyed by `b`, in one statement (with the NOTIFY that wakes the
feed). Shared locks never wait for each other, so writers run and commit in
parallel. Every position the transaction then draws is `> b`; the lock stays
until the transaction has committed or rolled back, and PostgreSQL releases
it only after the commit is visible to new snapshots.

The horizon (reader), in this order: (1) read the sequence's last value `L`;
(2) scan pg_locks for the announced bounds (one consistent picture of the
lock table) and take `H = min(L, every bound)`; (3) in a LATER statement
(a new snapshot under READ COMMITTED) read `last < position <= H`.

Claim: every position `p <= H` that ever commits is visible to (3). Take the
writer W that drew p. (a) W's lock was in the scan: its bound `b < p`, and
`H <= b`, so `p > H`; impossible. (b) W took its lock after the scan: it drew
p after that, so after (1), and `p > L >= H`; impossible. (c) W's lock was
gone before the scan: W had ended, and its commit (if any) was visible
before the lock went, so before (3) began. Rolled-back positions never
appear (a permanent gap, which is harmless). Hence `position > last` with
`last <= H` never skips, and the read is in position order. What the proof
needs: READ COMMITTED on the reader's connection (each statement a new
snapshot; a REPEATABLE READ transaction would read (3) in (1)'s snapshot), a
sequence without a per-session CACHE (the default, 1: values are handed out
in order across sessions), and no position drawn before the announcement
(only `append` inserts events).

What "committed before" means for a token now: positions follow the order
in which transactions began to append, not the order of their commits. A
token P is reached once every position <= P is searchable; that includes
every transaction that had committed before P's transaction appended (so
read-your-writes and any causal chain hold), not one that appended later
and happened to commit first. The horizon costs the reader one extra round
trip per read; writers pay nothing they did not pay before. An old writer
still taking the exclusive lock of earlier versions is not announced: stop
old writers before new readers run (a rolling upgrade across this change
is not gap-safe).

On SQLite the database write lock, taken at BEGIN IMMEDIATE, serialises
writers, so positions are drawn and made visible in the same order and the
plain `position > last` read is safe by construction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.events import Event
from writemodel.access import Actor
from writemodel.database import as_utc
from writemodel.tables import events

__all__ = [
    "NOTIFY_CHANNEL",
    "StoredEvent",
    "append",
    "forget",
    "head",
    "horizon",
    "read_after",
    "settled",
]

NOTIFY_CHANNEL = "bicameral_outbox"

# The append's statements, built once so SQLAlchemy's compiled cache serves them.
# PostgreSQL: the announcement (see above), and the NOTIFY that wakes the feed,
# in one round trip. A NOTIFY is delivered at commit (never for a rollback)
# whenever it was sent; it is a wake-up, not the data, so it carries no payload.
# The sequence is found by name each time (a catalog lookup, cheap): whatever
# the migrations made it (serial or identity), `pg_get_serial_sequence` names it.
_SEQUENCE = "pg_get_serial_sequence('events', 'position')::regclass"
_ANNOUNCE = text(
    f"SELECT pg_advisory_xact_lock_shared(coalesce(pg_sequence_last_value({_SEQUENCE}), 0)),"
    f" pg_notify('{NOTIFY_CHANNEL}', '')"
)
# The reader's horizon, steps (1) and (2) in one statement. The lock scan is a
# subquery correlated with the sequence's value, so it cannot run before that
# value is read (a correlated subplan runs per outer row, after the row exists).
# Advisory locks on one bigint key show as classid = high 32 bits, objid = low
# 32 bits, objsubid = 1. Any other shared bigint advisory lock in this database
# only lowers the horizon: conservative, never unsafe.
_HORIZON = text(
    f"SELECT least(s.last, (SELECT min((l.classid::bigint << 32) | l.objid::bigint)"
    " FROM pg_locks l"
    " WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.mode = 'ShareLock'"
    " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    " AND s.last IS NOT NULL))"
    f" FROM (SELECT coalesce(pg_sequence_last_value({_SEQUENCE}), 0) AS last OFFSET 0) s"
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
        await conn.execute(_ANNOUNCE)
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
    query = select(*columns).where(events.c.position > position)
    if conn.dialect.name == "postgresql":
        below = await horizon(conn)
        if below <= position:
            return []
        query = query.where(events.c.position <= below)
    result = await conn.execute(query.order_by(events.c.position).limit(limit))
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


async def horizon(conn: AsyncConnection) -> int:
    """PostgreSQL: the highest position below which nothing more can commit (see
    above). Read the events in a later statement, under READ COMMITTED."""
    return int(await conn.scalar(_HORIZON) or 0)


async def settled(conn: AsyncConnection) -> int:
    """A position at or below which every event is final: committed and visible to
    the caller's next statement, or never to be. On PostgreSQL the horizon; on
    SQLite (one writer at a time) the head. The head alone is not that on
    PostgreSQL: a position below it may still be in flight."""
    if conn.dialect.name == "postgresql":
        return await horizon(conn)
    position, _ = await head(conn)
    return position


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
