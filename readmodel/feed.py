"""The feed worker: outbox -> projections -> Elasticsearch -> checkpoint.

One loop, per projection: take the lease, read the events after its
checkpoint with the outbox's gap-safe read, build the documents, write them
through the bulk writer (refreshed, so searchable), and only then advance
the checkpoint. A crash anywhere before the advance replays the batch, which
external versioning makes harmless. The loop wakes on a signal (a commit in
this process, or LISTEN/NOTIFY on PostgreSQL) and polls anyway, so a lost
wake-up costs latency, never data.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from elasticsearch import AsyncElasticsearch
from sqlalchemy.ext.asyncio import AsyncEngine

from readmodel.bulk import BulkWriter
from readmodel.checkpoints import Checkpoints
from readmodel.projections import Projection
from readmodel.setup import ensure_indexes, start_afresh
from writemodel import outbox
from writemodel.outbox import StoredEvent

__all__ = ["Applied", "FeedWorker", "ProjectionLag"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Applied:
    """A batch a projection has applied and made searchable."""

    projection: str
    # The events of the batch the projection takes (maybe none).
    events: list[StoredEvent]
    # The checkpoint it reached: every event up to here is applied.
    position: int


@dataclass(frozen=True)
class ProjectionLag:
    name: str
    position: int
    head: int
    lag_events: int
    lag_seconds: float
    owner: str | None


Listener = Callable[[Applied], Awaitable[None]]


class FeedWorker:
    def __init__(
        self,
        engine: AsyncEngine,
        client: AsyncElasticsearch,
        projections: list[Projection],
        *,
        index_prefix: str,
        batch_size: int = 500,
        poll_interval: float = 1.0,
        lease: timedelta = timedelta(seconds=15),
        owner: str | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.engine = engine
        self.projections = projections
        self.index_prefix = index_prefix
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.lease = lease
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.clock = clock
        self.checkpoints = Checkpoints(engine)
        self.writer = BulkWriter(client)
        self.client = client
        self.listeners: list[Listener] = []
        self._indexes_ready = False
        self._wakeup = asyncio.Event()
        self._stopping = asyncio.Event()

    def wake(self) -> None:
        """New events may be there: look now instead of at the next poll."""
        self._wakeup.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wakeup.set()

    async def run(self) -> None:
        log.info("feed worker %s started", self.owner)
        failures = 0
        try:
            while not self._stopping.is_set():
                try:
                    applied = await self.run_once()
                    failures = 0
                except Exception:
                    failures += 1
                    delay = min(30.0, 0.5 * 2 ** min(failures, 6))
                    log.exception("feed batch failed; checkpoint kept, retrying in %.1fs", delay)
                    await self._sleep(delay)
                    continue
                if applied == 0:
                    await self._sleep(self.poll_interval)
        finally:
            await self.release_leases()
            log.info("feed worker %s stopped", self.owner)

    async def release_leases(self) -> None:
        """Give up every lease this worker holds, so another can take over at once."""
        for projection in self.projections:
            try:
                await self.checkpoints.release(projection.name, self.owner)
            except Exception:  # the lease will expire by itself
                log.warning("could not release lease of %s", projection.name)

    async def _sleep(self, seconds: float) -> None:
        self._wakeup.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wakeup.wait()

    async def run_once(self) -> int:
        """One batch per projection it holds; the number of events applied."""
        if not self._indexes_ready:
            await ensure_indexes(self.client, self.index_prefix)
            await self._forget_documents_of_another_database()
            self._indexes_ready = True
        total = 0
        for projection in self.projections:
            total += await self._step(projection)
        return total

    async def _forget_documents_of_another_database(self) -> None:
        """An index with documents, for a write database no worker ever projected
        (no checkpoint row), holds another database's documents: a wiped SQLite
        file, say, beside a node that kept its data. Elasticsearch is never the
        source of truth, so it starts afresh and the feed fills it from 0."""
        for projection in self.projections:
            if (await self.checkpoints.get(projection.name)).updated_at is not None:
                continue
            alias = projection.index.alias(self.index_prefix)
            held = (await self.client.count(index=alias))["count"]
            if held:
                fresh = await start_afresh(self.client, self.index_prefix, projection.index)
                log.warning(
                    "%s held %d documents this write database never projected; now %s "
                    "serves, filled from the outbox",
                    alias,
                    held,
                    fresh,
                )

    async def run_until_caught_up(self, timeout: float = 60.0) -> None:
        """Apply batches until every projection has reached the outbox head."""
        async with asyncio.timeout(timeout):
            while await self.run_once():
                pass

    async def _step(self, projection: Projection) -> int:
        now = self.clock()
        if not await self.checkpoints.acquire(projection.name, self.owner, now, self.lease):
            return 0
        checkpoint = await self.checkpoints.get(projection.name)
        async with self.engine.connect() as conn:
            conn = await conn.execution_options(sqlite_readonly=True)
            batch = await outbox.read_after(conn, checkpoint.position, self.batch_size)
            if not batch:
                return 0
            relevant = [e for e in batch if e.aggregate_type in projection.takes]
            actions = await projection.project(conn, relevant) if relevant else []
        if actions:
            # And to the index a rebuild is building, if one is (readmodel/rebuild.py):
            # looked up after the events were read, which the rebuild relies on.
            await self.writer.write(
                projection.index.alias(self.index_prefix),
                actions,
                also=[projection.index.next_alias(self.index_prefix)],
            )
        if not await self.checkpoints.advance(
            projection.name, self.owner, batch[-1].position, self.clock()
        ):
            log.warning(
                "lost the lease of %s before advancing; another worker goes on", projection.name
            )
            return 0
        applied = Applied(projection.name, relevant, batch[-1].position)
        for listener in self.listeners:
            await listener(applied)
        return len(batch)

    async def lag(self) -> list[ProjectionLag]:
        """Per projection: where it is, where the outbox is, and how far behind."""
        now = self.clock()
        async with self.engine.connect() as conn:
            conn = await conn.execution_options(sqlite_readonly=True)
            head, _ = await outbox.head(conn)
            figures = []
            for projection in self.projections:
                checkpoint = await self.checkpoints.get(projection.name)
                oldest = await outbox.read_after(conn, checkpoint.position, 1)
                seconds = (now - oldest[0].occurred_at).total_seconds() if oldest else 0.0
                figures.append(
                    ProjectionLag(
                        projection.name,
                        checkpoint.position,
                        head,
                        max(0, head - checkpoint.position),
                        max(0.0, seconds),
                        checkpoint.owner,
                    )
                )
            return figures
