"""How far each read model is behind the outbox: for the API, /metrics and the CLI.

Answered from the stored state alone (the checkpoints and the outbox), in one
short read on one pooled connection, so nobody builds or asks a feed worker:
any process that can read the write database can tell. A read model split into
partitions (readmodel/partitions.py) is as far behind as its furthest-behind
partition: that is the position a consistency token waits for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from readmodel.checkpoints import Checkpoint, by_read_model, read_rows
from writemodel import outbox
from writemodel.database import read_only

__all__ = ["PartitionLag", "ProjectionLag", "read_lag"]


@dataclass(frozen=True)
class PartitionLag:
    # The partition's checkpoint row (`products:2/4`).
    name: str
    position: int
    lag_events: int
    # The worker holding its lease (maybe expired), if any, and until when.
    owner: str | None
    lease_until: datetime | None


@dataclass(frozen=True)
class ProjectionLag:
    name: str
    # The checkpoint: every event up to here is applied and searchable (the
    # furthest-behind partition's).
    position: int
    # The outbox head when read.
    head: int
    lag_events: int
    # Age of the oldest event the read model has not applied (0 when caught up).
    lag_seconds: float
    # The worker holding the lease of the furthest-behind partition, if any.
    owner: str | None
    # Every partition, by name.
    partitions: tuple[PartitionLag, ...] = ()


async def read_lag(engine: AsyncEngine, names: Sequence[str], now: datetime) -> list[ProjectionLag]:
    """Per read model in `names`, in that order: where it is, where the outbox
    is, and how far behind (a read model without a checkpoint stands at 0)."""
    async with read_only(engine) as conn:
        head, _ = await outbox.head(conn)
        found = by_read_model(await read_rows(conn))
        figures = []
        for name in names:
            rows = found.get(name, [])
            behind = min(rows, key=lambda r: (r.position, r.name)) if rows else None
            position = 0 if behind is None else behind.position
            oldest = await outbox.read_after(conn, position, 1, payload=False)
            seconds = (now - oldest[0].occurred_at).total_seconds() if oldest else 0.0
            figures.append(
                ProjectionLag(
                    name,
                    position,
                    head,
                    max(0, head - position),
                    max(0.0, seconds),
                    None if behind is None else behind.owner,
                    tuple(
                        PartitionLag(
                            r.name, r.position, max(0, head - r.position), r.owner, r.lease_until
                        )
                        for r in sorted(rows, key=_partition_order)
                    ),
                )
            )
        return figures


def _partition_order(row: Checkpoint) -> tuple[int, str]:
    name = row.name
    number = name.partition(":")[2].split("/", 1)[0]
    return (int(number) if number.isdigit() else -1, name)
