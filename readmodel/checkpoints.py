"""Where each read model's partitions have got to, kept in the write database.

A checkpoint moves only forward, and only after the documents of the batch
it covers are in Elasticsearch. A read model has one row per partition
(readmodel/partitions.py: the split, why it is correct, who owns what), named
`<read model>:<p>/<P>`; each row holds its partition's position and lease.
Callers outside the feed speak of read models: `reached`, `get` and `all`
answer per read model with its furthest-behind partition (the position every
partition has made searchable).

Rows from before partitions are named by the read model alone. `seed` creates
the partition rows a worker needs from the lowest position the read model's
existing rows hold (its old row, or the partitions of another count), and
drops those others in the same transaction: a replay from there is harmless
(external versions), and only one partition count is ever live, so readers
need not know it. Every worker of a database must run the same FEED_PARTITIONS
(docs/operations.md: changing the count).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from readmodel.partitions import (
    AdvisoryLocks,
    Lease,
    held_locks,
    lock_key,
    partition_count,
    plan,
    presence_key,
    read_model_of,
    slot_names,
)
from readmodel.quarantine import Refusal, settle
from writemodel.database import as_utc, read_only
from writemodel.tables import checkpoints, feed_workers

__all__ = ["Checkpoint", "Checkpoints", "LocksLost", "read_all", "read_rows"]


class LocksLost(Exception):
    """A worker's advisory locks went with their connection."""


@dataclass(frozen=True)
class Checkpoint:
    # A row's name (`products:2/4`), or a read model's for an aggregate (`products`).
    name: str
    position: int
    updated_at: datetime | None
    owner: str | None
    lease_until: datetime | None

    @property
    def read_model(self) -> str:
        return read_model_of(self.name)


class Checkpoints:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def seed(self, read_models: Sequence[str], partitions: int, now: datetime) -> None:
        """Create the partition rows of `read_models` that have none yet, at the
        lowest position the read model's other rows hold (0 without any), and drop
        those other rows (a count from before, or the row from before partitions)."""
        async with self.engine.begin() as conn:
            rows = await read_rows(conn)
            for read_model in read_models:
                wanted = slot_names(read_model, partitions)
                mine = [r for r in rows if r.read_model == read_model]
                present = {r.name for r in mine}
                missing = [name for name in wanted if name not in present]
                others = [r for r in mine if r.name not in wanted]
                if not missing and not others:
                    continue
                start = min((r.position for r in others), default=0) if missing else 0
                for name in missing:
                    try:
                        async with conn.begin_nested():
                            await conn.execute(
                                insert(checkpoints).values(
                                    name=name, position=start, updated_at=now
                                )
                            )
                    except IntegrityError:
                        pass  # created by another worker meanwhile
                if others:
                    await conn.execute(
                        delete(checkpoints).where(checkpoints.c.name.in_([r.name for r in others]))
                    )

    async def get(self, name: str) -> Checkpoint:
        """Read model `name`, as its furthest-behind partition."""
        for checkpoint in await self.all():
            if checkpoint.name == name:
                return checkpoint
        return Checkpoint(name, 0, None, None, None)

    async def all(self) -> list[Checkpoint]:
        """Every read model, as its furthest-behind partition."""
        async with read_only(self.engine) as conn:
            return await read_all(conn)

    async def rows(self) -> list[Checkpoint]:
        """Every partition's row."""
        async with read_only(self.engine) as conn:
            return await read_rows(conn)

    async def reached(self, names: Sequence[str]) -> int:
        """The position every one of read models `names` has applied and made
        searchable: the lowest of their partitions (one query; 0 for a read model
        that has no checkpoint yet, or for no names)."""
        positions = {c.name: c.position for c in await self.all()}
        return min((positions.get(name, 0) for name in names), default=0)

    async def share(
        self,
        read_models: Sequence[str],
        partitions: int,
        owner: str,
        now: datetime,
        lease: timedelta,
        *,
        locks: AdvisoryLocks | None = None,
        renew: bool = True,
    ) -> set[str]:
        """Take `owner`'s fair share of the partitions of `read_models` and renew
        what it keeps (readmodel/partitions.py); the rows it now holds.

        One read (rows, live workers and, with `locks`, the advisory locks held),
        then, only if something changes or `renew`, one transaction: `owner`'s
        registration renewed, its partitions renewed, claimed or given back. A
        partition is claimed when free, expired, or (with `locks`) orphaned by a
        dead owner, whose lock this worker must then hold."""
        if locks is not None:
            await locks.open()
        async with read_only(self.engine) as conn:
            rows = {r.name: r for r in await read_rows(conn)}
            alive = await conn.execute(
                select(feed_workers.c.owner, feed_workers.c.read_model).where(
                    feed_workers.c.read_model.in_(read_models),
                    feed_workers.c.lease_until >= now,
                    feed_workers.c.owner != owner,
                )
            )
            registered: dict[str, set[str]] = {}
            for other, name in alive:
                registered.setdefault(name, set()).add(other)
            locked: set[str] | None = None
            if locks is not None:
                partition_keys, worker_keys = await held_locks(conn)
                if presence_key(owner) not in worker_keys:
                    # Our own lock is gone: the lock connection died (a server restart,
                    # a network cut) and every lock with it. Whatever we held may be
                    # another's by now; the caller counts it all as lost.
                    await locks.lost()
                    raise LocksLost(f"{owner} lost its lock connection")
                locked = {name for name in rows if lock_key(name) in partition_keys}
                registered = {
                    name: {o for o in others if presence_key(o) in worker_keys}
                    for name, others in registered.items()
                }
        wanted = [row for name in read_models for row in slot_names(name, partitions)]
        if any(row not in rows for row in wanted):
            # Dropped by a worker seeding another partition count (every worker must
            # run the same FEED_PARTITIONS; docs/operations.md): seed them again.
            await self.seed(read_models, partitions, now)
            return set()
        keep: list[str] = []
        give_back: list[str] = []
        claim: list[str] = []
        orphans: dict[str, str] = {}
        for name in read_models:
            leases = [
                Lease(row, r.owner, r.lease_until)
                for row in slot_names(name, partitions)
                if (r := rows.get(row)) is not None
            ]
            decided = plan(leases, owner, now, registered.get(name, set()), locked)
            keep += decided.keep
            give_back += decided.give_back
            claim += decided.claim
            orphans.update(decided.orphans)
        if not (renew or give_back or claim or orphans):
            return set(keep)
        if locks is not None:
            # An orphan is taken only with its lock (whoever gets the lock first takes
            # it); a free or expired partition, or one kept, with its lock if it can
            # be had, else by its lease alone (a frozen owner may still hold the lock).
            got = await locks.take([*keep, *claim, *orphans])
            orphans = {row: was for row, was in orphans.items() if row in got}
        taking = [*keep, *claim, *orphans]
        async with self.engine.begin() as conn:
            if renew:
                await conn.execute(
                    delete(feed_workers).where(
                        or_(feed_workers.c.owner == owner, feed_workers.c.lease_until < now)
                    )
                )
                await conn.execute(
                    insert(feed_workers),
                    [
                        {"owner": owner, "read_model": name, "lease_until": now + lease}
                        for name in read_models
                    ],
                )
            held: set[str] = set()
            if taking:
                takeable = [
                    checkpoints.c.owner == owner,
                    checkpoints.c.owner.is_(None),
                    checkpoints.c.lease_until < now,
                ]
                if orphans:
                    takeable.append(
                        and_(
                            checkpoints.c.name.in_(sorted(orphans)),
                            checkpoints.c.owner.in_(sorted(set(orphans.values()))),
                        )
                    )
                result = await conn.execute(
                    update(checkpoints)
                    .where(checkpoints.c.name.in_(taking), or_(*takeable))
                    .values(owner=owner, lease_until=now + lease)
                    .returning(checkpoints.c.name)
                )
                held = set(result.scalars())
            if give_back:
                await conn.execute(
                    update(checkpoints)
                    .where(checkpoints.c.name.in_(give_back), checkpoints.c.owner == owner)
                    .values(owner=None, lease_until=None)
                )
        if locks is not None:
            await locks.give_up(locks.held - held)
        return held

    async def retire(self, owner: str) -> None:
        """`owner` serves no read model any more (a worker stopping)."""
        async with self.engine.begin() as conn:
            await conn.execute(delete(feed_workers).where(feed_workers.c.owner == owner))

    async def release(self, names: Sequence[str], owner: str) -> None:
        """Give up the leases `owner` holds among `names` (rows, or whole read models),
        and its registration for those read models: it no longer counts for a share."""
        async with self.engine.begin() as conn:
            await conn.execute(
                delete(feed_workers).where(
                    feed_workers.c.owner == owner,
                    feed_workers.c.read_model.in_({read_model_of(name) for name in names}),
                )
            )
            rows = [
                r.name for r in await read_rows(conn) if r.name in names or r.read_model in names
            ]
            if rows:
                await conn.execute(
                    update(checkpoints)
                    .where(checkpoints.c.name.in_(rows), checkpoints.c.owner == owner)
                    .values(owner=None, lease_until=None)
                )

    async def advance(
        self,
        names: Sequence[str],
        owner: str,
        position: int,
        now: datetime,
        *,
        notify: str | None = None,
        refused: Sequence[Refusal] = (),
        written: Mapping[str, Collection[str]] | None = None,
    ) -> set[str]:
        """Move rows `names` forward to `position` where `owner` still holds the
        lease; the rows moved. Never backward. With `notify` (PostgreSQL), the same
        transaction NOTIFYs that channel with the position, so listeners hear of it
        at commit.

        The same transaction settles the quarantine of the read models moved
        (readmodel/quarantine.py): the documents `refused` on the way are recorded,
        and entries of documents now `written` (read model -> ids) are superseded.
        Either the checkpoint moves past a refused document and it is recorded, or
        neither."""
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(checkpoints)
                .where(
                    checkpoints.c.name.in_(names),
                    checkpoints.c.owner == owner,
                    checkpoints.c.position <= position,
                )
                .values(position=position, updated_at=now)
                .returning(checkpoints.c.name)
            )
            moved = set(result.scalars())
            if refused or written:
                await settle(conn, {read_model_of(n) for n in moved}, refused, written or {}, now)
            if notify is not None and moved:
                await conn.execute(select(func.pg_notify(notify, str(position))))
            return moved

    async def reset(self, name: str, position: int, now: datetime) -> None:
        """Set read model `name` (every partition of it) to `position` (a replay),
        whoever holds it; without rows yet, its row from before partitions, which
        the partitions are seeded from."""
        async with self.engine.begin() as conn:
            rows = [r.name for r in await read_rows(conn) if r.read_model == name]
            if rows:
                await conn.execute(
                    update(checkpoints)
                    .where(checkpoints.c.name.in_(rows))
                    .values(position=position, updated_at=now)
                )
                return
        try:
            async with self.engine.begin() as conn:
                await conn.execute(
                    insert(checkpoints).values(name=name, position=position, updated_at=now)
                )
        except IntegrityError:  # seeded meanwhile
            await self.reset(name, position, now)


def _checkpoint(r: Row[Any]) -> Checkpoint:
    return Checkpoint(
        r.name,
        r.position,
        as_utc(r.updated_at),
        r.owner,
        None if r.lease_until is None else as_utc(r.lease_until),
    )


async def read_rows(conn: AsyncConnection) -> list[Checkpoint]:
    """Every partition's row, by name, on the caller's connection."""
    rows = await conn.execute(select(checkpoints).order_by(checkpoints.c.name))
    return [_checkpoint(r) for r in rows]


def by_read_model(rows: Sequence[Checkpoint]) -> dict[str, list[Checkpoint]]:
    """Rows by read model: the partitions of its newest count (a row from before
    partitions only while it has none: `seed` drops it with them)."""
    grouped: dict[str, list[Checkpoint]] = {}
    for row in rows:
        grouped.setdefault(row.read_model, []).append(row)
    for name, group in grouped.items():
        counts = {partition_count(r.name) for r in group} - {None}
        if counts:
            # Two counts only while a seed of another count races: the lowest is safe.
            grouped[name] = [r for r in group if partition_count(r.name) is not None]
    return grouped


async def read_all(conn: AsyncConnection) -> list[Checkpoint]:
    """Every read model, as its furthest-behind partition (its position, owner and
    lease), read on the caller's connection (so a reader that also needs the
    outbox, readmodel/lag.py and readmodel/progress.py, holds one connection)."""
    return [
        _aggregate(name, group)
        for name, group in sorted(by_read_model(await read_rows(conn)).items())
    ]


def _aggregate(name: str, group: Sequence[Checkpoint]) -> Checkpoint:
    behind = min(group, key=lambda r: (r.position, r.name))
    return Checkpoint(name, behind.position, behind.updated_at, behind.owner, behind.lease_until)
