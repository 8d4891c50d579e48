"""Where each projection has got to, kept in the write database.

A checkpoint moves only forward, and only after the documents of the batch
it covers are in Elasticsearch. The same row holds the projection's lease:
one worker owns a projection at a time, and another takes it over once the
owner stops renewing it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from writemodel.outbox import as_utc
from writemodel.tables import checkpoints

__all__ = ["Checkpoint", "Checkpoints"]


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

    async def _ensure(self, name: str, now: datetime) -> None:
        async with self.engine.begin() as conn:
            found = await conn.execute(select(checkpoints.c.name).where(checkpoints.c.name == name))
            if found.first() is None:
                try:
                    await conn.execute(
                        insert(checkpoints).values(name=name, position=0, updated_at=now)
                    )
                except IntegrityError:
                    pass  # created by another worker meanwhile

    async def get(self, name: str) -> Checkpoint:
        async with self.engine.connect() as conn:
            conn = await conn.execution_options(sqlite_readonly=True)
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
        async with self.engine.connect() as conn:
            conn = await conn.execution_options(sqlite_readonly=True)
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

    async def acquire(self, name: str, owner: str, now: datetime, lease: timedelta) -> bool:
        """Take or renew the lease; False while another live owner holds it."""
        await self._ensure(name, now)
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(checkpoints)
                .where(
                    checkpoints.c.name == name,
                    or_(
                        checkpoints.c.owner.is_(None),
                        checkpoints.c.owner == owner,
                        checkpoints.c.lease_until < now,
                    ),
                )
                .values(owner=owner, lease_until=now + lease)
            )
            return result.rowcount == 1

    async def release(self, name: str, owner: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                update(checkpoints)
                .where(checkpoints.c.name == name, checkpoints.c.owner == owner)
                .values(owner=None, lease_until=None)
            )

    async def advance(self, name: str, owner: str, position: int, now: datetime) -> bool:
        """Move forward to `position` if `owner` still holds the lease; never backward."""
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(checkpoints)
                .where(
                    checkpoints.c.name == name,
                    checkpoints.c.owner == owner,
                    checkpoints.c.position <= position,
                )
                .values(position=position, updated_at=now)
            )
            return result.rowcount == 1

    async def reset(self, name: str, position: int, now: datetime) -> None:
        """Set a checkpoint (a replay from `position`), whoever holds it."""
        await self._ensure(name, now)
        async with self.engine.begin() as conn:
            await conn.execute(
                update(checkpoints)
                .where(checkpoints.c.name == name)
                .values(position=position, updated_at=now)
            )
