"""Change notifications for subscribers: what changed, once the read side has it.

The outbox is the source of truth. A `ChangeHub` (one per API process) keeps a
frontier: the position every read model has applied and made searchable,
read from the checkpoints in the write database. When the frontier moves, the
hub reads the outbox up to it and hands each change to every subscriber's
bounded queue. Wake-ups come from the worker in this process, from
PostgreSQL's NOTIFY when the worker runs elsewhere, and from a poll, so a
lost wake-up costs latency, never a change.

A subscriber that gives a position to resume from first gets the changes
after it from the outbox, up to the frontier at the moment it subscribed,
then the live ones past that frontier: the hub dispatches a batch and moves
the frontier without yielding to other tasks, and a subscriber registers in
one step too, so every change is either at or below the frontier it saw
(replayed) or above it (queued), never both and never neither.

A subscriber whose queue fills is closed with the position it had reached,
from which it can resume; it never slows the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from readmodel.checkpoints import Checkpoints
from readmodel.tasks import cancel
from writemodel import outbox
from writemodel.database import read_only
from writemodel.outbox import StoredEvent
from writemodel.tables import orders

__all__ = ["APPLIED_CHANNEL", "Change", "ChangeHub", "SubscriberFellBehind"]

log = logging.getLogger(__name__)

# The worker NOTIFYs this channel after a batch is searchable; payload: the position.
APPLIED_CHANNEL = "bicameral_applied"

# Stock changes are the product's: the read side embeds stock in the product document.
_ENTITY = {"Product": "Product", "Stock": "Product", "Order": "Order", "Customer": "Customer"}


@dataclass(frozen=True)
class Change:
    entity_type: str  # Product, Order or Customer
    id: str
    # The version of the aggregate the event belongs to (a Stock event: the stock's).
    version: int
    # The event's outbox position: a consistency token for queries, a resume point.
    position: int
    kind: str  # the event's type, e.g. PriceChanged
    customer_id: str | None = None  # for orders: whose they are


class SubscriberFellBehind(Exception):
    def __init__(self, position: int) -> None:
        super().__init__(
            f'this subscriber fell behind and was closed; resume with after: "{position}"'
        )
        self.position = position


@dataclass(eq=False)
class _Subscriber:
    queue: asyncio.Queue[Change]
    # Set instead of queueing once the queue is full; the reader, who then has a
    # full queue to drain, sees it before its next change.
    overflowed: bool = False


class ChangeHub:
    def __init__(
        self,
        engine: AsyncEngine,
        checkpoints: Checkpoints,
        projections: list[str],
        *,
        queue_size: int = 1000,
        poll_interval: float = 1.0,
        page: int = 500,
    ) -> None:
        self.engine = engine
        self.checkpoints = checkpoints
        self.projections = projections
        self.queue_size = queue_size
        self.poll_interval = poll_interval
        self.page = page
        self.frontier = 0
        self.subscribers: set[_Subscriber] = set()
        self._poke = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.frontier = await self.checkpoints.reached(self.projections)
        self._task = asyncio.create_task(self._run(), name="change-hub")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel(task)

    def poke(self, *_: object) -> None:
        """The read side may have moved: look now rather than at the next poll."""
        self._poke.set()

    async def _run(self) -> None:
        while True:
            # asyncio.timeout rather than wait_for: no task per wait (3.11's wait_for
            # wraps the coroutine in one), so the process's task count stays flat.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_interval):
                    await self._poke.wait()
            self._poke.clear()
            try:
                await self.pump()
            except Exception:
                log.exception("change hub could not read the outbox; retrying")

    async def pump(self) -> None:
        """Dispatch every change up to the read side's position."""
        target = await self.checkpoints.reached(self.projections)
        while self.frontier < target:
            changes, last = await self.read(self.frontier, target)
            # From here to the frontier's update, no await: see the module's docstring.
            for subscriber in list(self.subscribers):
                for change in changes:
                    if subscriber.overflowed:
                        break
                    try:
                        subscriber.queue.put_nowait(change)
                    except asyncio.QueueFull:
                        subscriber.overflowed = True
            self.frontier = last

    async def read(self, after: int, upto: int) -> tuple[list[Change], int]:
        """Changes in (after, upto], one page at most; and the position the page reached."""
        async with read_only(self.engine) as conn:
            events = [
                e
                for e in await outbox.read_after(conn, after, self.page, payload=False)
                if e.position <= upto
            ]
            if not events:
                return [], upto
            owners = await self._order_owners(conn, events)
        changes = [
            Change(
                entity_type=_ENTITY[e.aggregate_type],
                id=e.aggregate_id,
                version=e.aggregate_version,
                position=e.position,
                kind=e.event_type,
                customer_id=owners.get(e.aggregate_id) if e.aggregate_type == "Order" else None,
            )
            for e in events
            if e.aggregate_type in _ENTITY
        ]
        reached = events[-1].position if len(events) == self.page else upto
        return changes, reached

    @staticmethod
    async def _order_owners(conn: AsyncConnection, events: list[StoredEvent]) -> dict[str, str]:
        ids = sorted({e.aggregate_id for e in events if e.aggregate_type == "Order"})
        if not ids:
            return {}
        rows = await conn.execute(
            select(orders.c.id, orders.c.customer_id).where(orders.c.id.in_(ids))
        )
        return {row.id: row.customer_id for row in rows}

    async def subscribe(
        self, accept: Callable[[Change], bool], after: int | None = None
    ) -> AsyncIterator[Change]:
        """Changes that `accept` takes: those after `after` first (if given), then live ones."""
        subscriber = _Subscriber(asyncio.Queue(self.queue_size))
        # Registering and reading the frontier happen together, with no await between.
        self.subscribers.add(subscriber)
        seen = self.frontier
        # Changes at or below `last` have been delivered (or were not asked for).
        last = seen if after is None else after
        try:
            while last < seen:
                changes, last = await self.read(last, seen)
                for change in changes:
                    if accept(change):
                        yield change
            while True:
                if subscriber.overflowed:
                    raise SubscriberFellBehind(last)
                change = await subscriber.queue.get()
                if change.position <= last:
                    continue  # a resume point ahead of this hub: already delivered
                last = change.position
                if accept(change):
                    yield change
        finally:
            self.subscribers.discard(subscriber)
