"""Where each projection has got to, kept in the write database.

A checkpoint moves only forward, and only after the documents of the batch
it covers are in Elasticsearch. The same row holds the projection's lease:
one worker owns a projection at a time, and another takes it over once the
owner stops renewing it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from readmodel.quarantine import Refusal, settle
from writemodel.database import as_utc, read_only
from writemodel.tables import checkpoints

__all__ = ["Checkpoint", "Checkpoints", "read_all"]


@dataclass(frozen=True)
class Checkpoint:
    name: str
    position: int
    updated_at: datetime | None
    owner: str | None
    lease_until: datetime | None


class Checkpoints:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def ensure(self, names: Sequence[str], now: datetime) -> None:
        """Create the rows of checkpoints that have none yet (at position 0)."""
        async with self.engine.begin() as conn:
            found = await conn.execute(
                select(checkpoints.c.name).where(checkpoints.c.name.in_(names))
            )
            missing = sorted(set(names) - set(found.scalars()))
            for name in missing:
                try:
                    async with conn.begin_nested():
                        await conn.execute(
                            insert(checkpoints).values(name=name, position=0, updated_at=now)
                        )
                except IntegrityError:
                    pass  # created by another worker meanwhile

    async def get(self, name: str) -> Checkpoint:
        async with read_only(self.engine) as conn:
            row = (
                await conn.execute(select(checkpoints).where(checkpoints.c.name == name))
            ).first()
        if row is None:
            return Checkpoint(name, 0, None, None, None)
        return Checkpoint(
            row.name,
            row.position,
            as_utc(row.updated_at),
            row.owner,
            None if row.lease_until is None else as_utc(row.lease_until),
        )

    async def all(self) -> list[Checkpoint]:
        async with read_only(self.engine) as conn:
            return await read_all(conn)

    async def reached(self, names: Sequence[str]) -> int:
        """The position every one of `names` has applied and made searchable (one query;
        0 for a projection that has no checkpoint yet, or for no names)."""
        positions = {c.name: c.position for c in await self.all()}
        return min((positions.get(name, 0) for name in names), default=0)

    async def hold(
        self, names: Sequence[str], owner: str, now: datetime, lease: timedelta
    ) -> set[str]:
        """Take or renew the leases of `names` in one statement; the names now held.

        A lease is taken when it is free, already `owner`'s, or expired.
        """
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(checkpoints)
                .where(
                    checkpoints.c.name.in_(names),
                    or_(
                        checkpoints.c.owner.is_(None),
                        checkpoints.c.owner == owner,
                        checkpoints.c.lease_until < now,
                    ),
                )
                .values(owner=owner, lease_until=now + lease)
                .returning(checkpoints.c.name)
            )
            return set(result.scalars())

    async def release(self, names: Sequence[str], owner: str) -> None:
        """Give up the leases `owner` holds among `names`."""
        async with self.engine.begin() as conn:
            await conn.execute(
                update(checkpoints)
                .where(checkpoints.c.name.in_(names), checkpoints.c.owner == owner)
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
        """Move `names` forward to `position` where `owner` still holds the lease; the
        names moved. Never backward. With `notify` (PostgreSQL), the same transaction
        NOTIFYs that channel with the position, so listeners hear of it at commit.

        The same transaction settles the quarantine of the names moved
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
                await settle(conn, moved, refused, written or {}, now)
            if notify is not None and moved:
                await conn.execute(select(func.pg_notify(notify, str(position))))
            return moved

    async def reset(self, name: str, position: int, now: datetime) -> None:
        """Set a checkpoint (a replay from `position`), whoever holds it."""
        await self.ensure([name], now)
        async with self.engine.begin() as conn:
            await conn.execute(
                update(checkpoints)
                .where(checkpoints.c.name == name)
                .values(position=position, updated_at=now)
            )


async def read_all(conn: AsyncConnection) -> list[Checkpoint]:
    """Every checkpoint, by name, read on the caller's connection (so a reader
    that also needs the outbox, readmodel/lag.py, holds one connection, not two)."""
    rows = await conn.execute(select(checkpoints).order_by(checkpoints.c.name))
    return [
        Checkpoint(
            r.name,
            r.position,
            as_utc(r.updated_at),
            r.owner,
            None if r.lease_until is None else as_utc(r.lease_until),
        )
        for r in rows
    ]
