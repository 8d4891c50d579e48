"""How far the read models have come, watched once per process for every waiter.

A query with a consistency token waits until the read models it reads have
reached the token's position. Each such wait used to poll the checkpoints on
its own, taking a pooled write-database connection every few milliseconds;
forty parked waits took the whole pool from everyone else. Here the waits
share ONE watcher: a waiter registers the position it wants and awaits a
future, holding no connection and costing nothing while parked. One task
reads every checkpoint and the outbox head in one short read, only while
someone waits: at once when poked (the worker in this process applied a
batch, or another process's worker NOTIFYed the applied channel) and at a
short poll interval otherwise, so a lost wake-up costs latency, never a
wrong answer.

What a read says is kept: a checkpoint that once reached a position had the
documents up to it searchable, and a rebuild's reset checkpoint belongs to an
index that is not live until it has caught up, so a known position answers
later waits for anything at or below it without a read.

A position beyond the outbox head can never be reached by waiting: a token a
mutation returned is at or below the head as soon as the client holds it.
Such a wait answers stale at once, with the head read after it registered
(never an older one), instead of parking for the whole bound.

Where the positions come from is the `source`: by default the write
database (each read model's furthest-behind partition, then the outbox
head, on one connection); on a query node the progress the workers publish in Elasticsearch
(readmodel/published.py), which has no head a fresh token can be checked
against, so there a wait for a position beyond the head parks for its bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine

from readmodel.checkpoints import read_all
from readmodel.tasks import cancel
from writemodel import outbox
from writemodel.database import is_database_fault, read_only
from writemodel.unit_of_work import WriteDatabaseUnavailable

__all__ = ["Progress", "Source", "Waited"]

# Read model names -> (their positions, the outbox head or None when unknown).
Source = Callable[[Sequence[str]], Awaitable[tuple[Mapping[str, int], int | None]]]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Waited:
    """How a wait ended: `reached` is where the read models were when it answered."""

    reached: int
    # The wanted position is beyond the outbox head: no wait could reach it.
    beyond_head: bool = False


@dataclass(eq=False)
class _Waiter:
    position: int
    names: tuple[str, ...]
    # The number of the first read that started after this waiter registered:
    # only such a read may say the position is beyond the head.
    first_read: int
    done: asyncio.Future[Waited] = field(default_factory=lambda: asyncio.Future())


class Progress:
    """One per process: answers `wait` from a shared read of the checkpoints."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        poll_interval: float = 0.02,
        source: Source | None = None,
        unreadable: Callable[[], Exception] | None = None,
    ) -> None:
        self.engine = engine
        self.poll_interval = poll_interval
        self.source: Source = source or self._from_write_database
        # What a wait raises when its bound passed with the source unreadable.
        self.unreadable = unreadable or (
            lambda: WriteDatabaseUnavailable(
                "the write database, which records how far the read models have come, "
                "could not be reached"
            )
        )
        # Read model name -> the highest position a read has seen it at.
        self.positions: dict[str, int] = {}
        self.head = 0
        # Whether the source tells the head (the published progress does not).
        self.knows_head = False
        # The last read's failure, while the write database cannot be read, and
        # the number of that read.
        self.error: BaseException | None = None
        self.failed_read = 0
        self.reads = 0  # reads started so far
        self._waiters: set[_Waiter] = set()
        self._poke = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def reached(self, names: Sequence[str]) -> int:
        """The position every one of `names` is known to have made searchable."""
        return min((self.positions.get(name, 0) for name in names), default=0)

    def poke(self, *_: object) -> None:
        """The read side may have moved: read now rather than at the next poll."""
        self._poke.set()

    async def wait(self, position: int, names: Sequence[str], timeout: float) -> Waited | None:
        """None once `names` have reached `position`; how far they got if the bound
        passed first, or at once if the position is beyond the outbox head.

        Raises WriteDatabaseUnavailable when the bound passed while the checkpoints
        could not be read: nobody can say how far the read models are."""
        if self.reached(names) >= position:
            return None
        waiter = _Waiter(position, tuple(names), self.reads + 1)
        self._waiters.add(waiter)
        self._start()
        try:
            async with asyncio.timeout(timeout):
                result = await asyncio.shield(waiter.done)
        except TimeoutError:
            # Only a read made for this wait may fail it, not an outage long past.
            if self.error is not None and self.failed_read >= waiter.first_read:
                raise self.unreadable() from self.error
            return Waited(self.reached(names))
        finally:
            self._waiters.discard(waiter)
        return None if result.reached >= position else result

    def _start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="read-progress")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel(task)

    async def _run(self) -> None:
        # Ends when nobody waits: a process with no parked query reads nothing.
        while self._waiters:
            self._poke.clear()
            self.reads += 1
            read = self.reads
            try:
                await self.read()
            except Exception as error:
                if self.error is None:  # once per outage, not once per poll
                    if is_database_fault(error):
                        log.warning("cannot read the read models' progress: %s", error)
                    else:
                        log.exception("reading the read models' progress failed")
                self.error = error
                self.failed_read = read
            else:
                self.error = None
                self._answer(read)
            if any(w.first_read > read for w in self._waiters):
                continue  # registered during that read: read again for them now
            # While the database is down, try a little less often than we poll.
            interval = self.poll_interval if self.error is None else max(self.poll_interval, 0.25)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._poke.wait()

    async def read(self) -> None:
        """The positions of the read models waited on, and the head, from the source."""
        names = sorted({name for waiter in self._waiters for name in waiter.names})
        found, head = await self.source(names)
        for name, position in found.items():
            if position > self.positions.get(name, -1):
                self.positions[name] = position
        if head is not None:
            self.head = max(self.head, head)
            self.knows_head = True

    async def _from_write_database(self, names: Sequence[str]) -> tuple[dict[str, int], int]:
        """Each read model's position (its furthest-behind partition, as
        `Checkpoints.reached` reads it), then the outbox head read after them, on
        one connection held for one read."""
        async with read_only(self.engine) as conn:
            found = {c.name: c.position for c in await read_all(conn) if c.name in names}
            head, _ = await outbox.head(conn)
        return found, head

    def _answer(self, read: int) -> None:
        for waiter in list(self._waiters):
            if waiter.done.done():
                continue
            reached = self.reached(waiter.names)
            if reached >= waiter.position:
                waiter.done.set_result(Waited(reached))
            elif self.knows_head and waiter.first_read <= read and waiter.position > self.head:
                waiter.done.set_result(Waited(reached, beyond_head=True))
