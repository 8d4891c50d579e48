"""How far each read model is behind the outbox: for the API, /metrics and the CLI.

Answered from the stored state alone (the checkpoints and the outbox), in one
short read on one pooled connection, so nobody builds or asks a feed worker:
any process that can read the write database can tell.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from readmodel.checkpoints import read_all
from writemodel import outbox
from writemodel.database import read_only

__all__ = ["ProjectionLag", "read_lag"]


@dataclass(frozen=True)
class ProjectionLag:
    name: str
    # The checkpoint: every event up to here is applied and searchable.
    position: int
    # The outbox head when read.
    head: int
    lag_events: int
    # Age of the oldest event the read model has not applied (0 when caught up).
    lag_seconds: float
    # The worker holding the read model's lease, if any.
    owner: str | None


async def read_lag(engine: AsyncEngine, names: Sequence[str], now: datetime) -> list[ProjectionLag]:
    """Per read model in `names`, in that order: where it is, where the outbox
    is, and how far behind (a read model without a checkpoint stands at 0)."""
    async with read_only(engine) as conn:
        head, _ = await outbox.head(conn)
        found = {checkpoint.name: checkpoint for checkpoint in await read_all(conn)}
        figures = []
        for name in names:
            checkpoint = found.get(name)
            position = 0 if checkpoint is None else checkpoint.position
            oldest = await outbox.read_after(conn, position, 1, payload=False)
            seconds = (now - oldest[0].occurred_at).total_seconds() if oldest else 0.0
            figures.append(
                ProjectionLag(
                    name,
                    position,
                    head,
                    max(0, head - position),
                    max(0.0, seconds),
                    None if checkpoint is None else checkpoint.owner,
                )
            )
        return figures
