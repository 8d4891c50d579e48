"""Read models split into partitions, shared fairly by the feed workers.

A read model's events are split into `P` partitions (FEED_PARTITIONS) by the
EVENT's aggregate id: `zlib.crc32(id) % P`, the same in every process and
every Python (never `hash()`, which is salted per process). Each partition has
its own checkpoint row, named `<read model>:<partition>/<P>` (the count is in
the name: partition 1 of 4 and partition 1 of 8 hold different events), and its
own lease. Partition p's checkpoint X means: every event up to X whose
aggregate hashes to p has been applied and made searchable. A read model has
reached X when every one of its partitions has (`Checkpoints.reached`).

Why that is correct although a projection maps one event to documents with
other ids (a Customer event re-projects that customer's orders, which another
partition's events project too): every document is built from the write
database's CURRENT state, read after every event up to the batch's end is
committed (the gap-safe read), and written with the external version of the
newest position touching it in the batch. Whichever partition's worker writes a
document, Elasticsearch keeps the highest version; the state that version
carries was read after that position was committed, so it holds every event
up to it. An event touching the document later than that belongs to some
partition whose worker has not applied it yet, and will write a higher version
with newer state when it does. So once every partition has reached X, every
document any event up to X touched shows at least the state after X, and the
order of one aggregate's events is kept because they all hash to one partition.

Ownership (`plan`): a worker serves at most its fair share of each read
model, ceil(P / live workers), where the live workers are those registered in
`feed_workers` with a live registration (and, on PostgreSQL, a live
connection) plus the owners of live leases. It claims free or expired
partitions (given back, released) up to that share, takes every expired one
(its owner is dead or frozen: the work must go on, the share is restored
later), and gives back what it holds past its share at its next renewal, but
only while another live worker holds fewer than P // N: so a newcomer gets its
share within about half a lease, and no partition is let go when nobody would
take it. (On SQLite a dead worker's registration looks like a newcomer's until
it expires, one lease after its last renewal: a survivor renewing meanwhile may
give partitions back that stay free until then. PostgreSQL knows the dead by
their locks.)

Fast failover on PostgreSQL (`AdvisoryLocks`): a worker also holds a
session-level advisory lock per partition it owns, plus one naming itself, on a
dedicated connection. SIGKILL ends that connection and PostgreSQL drops its
locks at once; a partition whose lease is live but whose lock nobody holds is
orphaned, and any worker may take it then (it takes the lock first), without
waiting out the lease. Ownership itself stays the checkpoint row's owner, so a
frozen-then-resumed worker cannot move a checkpoint it lost (the advance is
guarded by owner) nor roll a document back (external versions). A worker frozen
long enough (SIGSTOP) keeps its connection and its locks: its partitions move
when its lease expires, as before, and the new owner holds them by lease alone
until the frozen one lets go of the lock. SQLite has no advisory locks: leases
only, and a dead worker's partitions wait out its lease.
"""

from __future__ import annotations

import logging
import math
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

__all__ = [
    "AdvisoryLocks",
    "Plan",
    "lock_key",
    "partition_of",
    "plan",
    "presence_key",
    "read_model_of",
    "slot_name",
    "slot_names",
]

log = logging.getLogger(__name__)

# The first key of the two-key advisory locks: one for partitions, one for workers.
PARTITION_LOCKS = 0x0B1CA3E1
WORKER_LOCKS = 0x0B1CA3E2


def partition_of(aggregate_id: str, partitions: int) -> int:
    """The partition an event of `aggregate_id` belongs to: stable in every process."""
    if partitions == 1:
        return 0
    return zlib.crc32(aggregate_id.encode()) % partitions


def slot_name(read_model: str, partition: int, partitions: int) -> str:
    """The checkpoint row of one partition of a read model."""
    return f"{read_model}:{partition}/{partitions}"


def slot_names(read_model: str, partitions: int) -> list[str]:
    return [slot_name(read_model, p, partitions) for p in range(partitions)]


def read_model_of(row: str) -> str:
    """The read model a checkpoint row belongs to (a row from before partitions
    is named by the read model alone)."""
    return row.split(":", 1)[0]


def partition_count(row: str) -> int | None:
    """P in `<read model>:<p>/<P>`; None for a row from before partitions."""
    _, _, rest = row.partition(":")
    return int(rest.split("/", 1)[1]) if rest else None


def lock_key(row: str) -> int:
    """The second key of a partition's advisory lock (a positive int4)."""
    return zlib.crc32(row.encode()) & 0x7FFFFFFF


def presence_key(owner: str) -> int:
    return zlib.crc32(owner.encode()) & 0x7FFFFFFF


@dataclass(frozen=True)
class Lease:
    """One partition's checkpoint row, as far as ownership goes."""

    name: str
    owner: str | None
    lease_until: datetime | None

    def live(self, now: datetime) -> bool:
        return self.owner is not None and self.lease_until is not None and self.lease_until >= now


@dataclass
class Plan:
    """What one worker does with one read model's partitions at a renewal."""

    keep: list[str] = field(default_factory=list)
    give_back: list[str] = field(default_factory=list)
    # Expired partitions (all of them), and free ones within the share, to claim.
    claim: list[str] = field(default_factory=list)
    # Partitions whose owner's connection is gone: (row, that owner), taken at once.
    orphans: list[tuple[str, str]] = field(default_factory=list)
    share: int = 0


def plan(
    rows: Sequence[Lease],
    me: str,
    now: datetime,
    registered: Iterable[str],
    locked: set[str] | None,
) -> Plan:
    """Fair share of one read model's partitions (`rows`, every partition's row).

    `registered`: the other workers serving this read model, alive as far as is
    known. `locked`: the rows whose advisory lock somebody holds (PostgreSQL), or
    None (SQLite: leases only, nothing is ever orphaned)."""

    def orphaned(row: Lease) -> bool:
        return locked is not None and row.live(now) and row.owner != me and row.name not in locked

    alive = [r for r in rows if r.live(now) and r.owner != me and not orphaned(r)]
    owners = {me, *registered, *(r.owner for r in alive if r.owner is not None)}
    share = math.ceil(len(rows) / len(owners))
    held_by = Counter(r.owner for r in alive)
    # Give back only to someone who would take it: a live worker below its floor.
    someone_short = any(held_by[o] < len(rows) // len(owners) for o in owners - {me})
    mine = [r.name for r in rows if r.owner == me]
    keep = mine[:share] if someone_short else mine
    result = Plan(keep=keep, give_back=mine[len(keep) :], share=share)
    result.orphans = [(r.name, r.owner) for r in rows if orphaned(r) and r.owner is not None]
    # A lease that ran out: its owner is dead or frozen, and someone must go on now.
    expired = [r.name for r in rows if r.owner not in (None, me) and not r.live(now)]
    # A partition given back or released: for whoever is short of a share.
    free = [r.name for r in rows if r.owner is None]
    room = share - len(keep) - len(result.orphans) - len(expired)
    result.claim = expired + free[: max(0, room)]
    return result


class AdvisoryLocks:
    """A worker's session-level advisory locks on PostgreSQL, on a connection of
    their own (autocommit: it never holds a snapshot, which would hold back the
    outbox's gap-safe reader). Losing that connection loses every lock: the
    caller then treats its partitions as lost (`LocksLost`)."""

    def __init__(self, engine: AsyncEngine, owner: str) -> None:
        self.engine = engine
        self.owner = owner
        self.held: set[str] = set()
        # The connection failed since it was last opened: every lock went with it.
        self.broken = False
        self._conn: AsyncConnection | None = None

    async def _connection(self) -> AsyncConnection:
        if self._conn is None:
            conn = await self.engine.connect()
            try:
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.execute(
                    text("SELECT pg_advisory_lock(:a, :b)"),
                    {"a": WORKER_LOCKS, "b": presence_key(self.owner)},
                )
            except BaseException:
                await conn.close()
                raise
            self._conn = conn
            self.broken = False
        return self._conn

    async def open(self) -> None:
        """Connect and take this worker's own lock, which tells the others it is
        alive, before it counts for a share (a newcomer holds no partition yet)."""
        try:
            await self._connection()
        except BaseException:
            await self.lost()
            raise

    async def take(self, rows: Iterable[str]) -> set[str]:
        """Try the locks of `rows` not held yet; the rows whose lock is now held."""
        wanted = sorted(set(rows) - self.held)
        if wanted:
            conn = await self._connection()
            try:
                columns = ", ".join(
                    f"pg_try_advisory_lock(:a, :k{i}) AS l{i}" for i in range(len(wanted))
                )
                binds: dict[str, int] = {"a": PARTITION_LOCKS}
                binds.update({f"k{i}": lock_key(row) for i, row in enumerate(wanted)})
                got = (await conn.execute(text(f"SELECT {columns}"), binds)).one()
            except BaseException:
                await self.lost()
                raise
            self.held.update(row for row, ok in zip(wanted, got, strict=True) if ok)
        return self.held & set(rows)

    async def give_up(self, rows: Iterable[str]) -> None:
        gone = sorted(set(rows) & self.held)
        if not gone or self._conn is None:
            return
        self.held.difference_update(gone)
        try:
            for row in gone:
                await self._conn.execute(
                    text("SELECT pg_advisory_unlock(:a, :b)"),
                    {"a": PARTITION_LOCKS, "b": lock_key(row)},
                )
        except BaseException:
            await self.lost()
            raise

    async def lost(self) -> None:
        """The connection failed: every lock went with it."""
        self.broken = True
        self.held.clear()
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await conn.invalidate()
            except Exception:
                log.debug("closing a broken lock connection failed", exc_info=True)

    async def close(self) -> None:
        self.held.clear()
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await conn.close()  # ends the session: PostgreSQL drops its locks
            except Exception:
                await conn.invalidate()


async def held_locks(conn: AsyncConnection) -> tuple[set[int], set[int]]:
    """The partition and worker advisory lock keys somebody holds in this database."""
    rows = await conn.execute(
        text(
            "SELECT classid::bigint AS a, objid::bigint AS b FROM pg_locks "
            "WHERE locktype = 'advisory' AND granted AND objsubid = 2 "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND classid::bigint IN (:p, :w)"
        ),
        {"p": PARTITION_LOCKS, "w": WORKER_LOCKS},
    )
    partitions: set[int] = set()
    workers: set[int] = set()
    for a, b in rows:
        (partitions if a == PARTITION_LOCKS else workers).add(int(b))
    return partitions, workers
