"""The composition root: builds every service from one `Settings`.

Tests call `build` with other settings; nothing else constructs engines,
clients or workers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from elasticsearch import AsyncElasticsearch

from api.settings import Settings
from readmodel.checkpoints import Checkpoints
from readmodel.feed import Applied, FeedWorker
from readmodel.lag import ProjectionLag, read_lag
from readmodel.notifications import APPLIED_CHANNEL, ChangeHub
from readmodel.progress import Progress
from readmodel.projections import D, Projection, default_projections
from readmodel.quarantine import Quarantine
from readmodel.reader import Reader
from readmodel.setup import ensure_indexes
from readmodel.wakeup import PostgresWakeup
from writemodel import outbox
from writemodel.database import create_engine, is_database_fault, is_postgres, read_only
from writemodel.outbox import NOTIFY_CHANNEL
from writemodel.service import CommandService
from writemodel.sql_unit_of_work import SqlUnitOfWork
from writemodel.unit_of_work import WriteDatabaseUnavailable

__all__ = ["Bicameral", "build"]

log = logging.getLogger(__name__)


class Bicameral:
    """Everything one process runs: write side, read side and, maybe, the worker."""

    def __init__(self, settings: Settings, *, embedded_worker: bool | None = None) -> None:
        self.settings = settings
        self.engine = create_engine(settings.write_database_url)
        self.search = AsyncElasticsearch(
            settings.elasticsearch_url, request_timeout=30, retry_on_timeout=True, max_retries=2
        )
        self.commands = CommandService(
            lambda: SqlUnitOfWork(self.engine),
            idempotency_ttl=timedelta(hours=settings.idempotency_ttl_hours),
        )
        self.checkpoints = Checkpoints(self.engine)
        # The one watcher every consistency wait of this process parks on.
        self.progress = Progress(self.engine)
        self.reader = Reader(
            self.search,
            self.checkpoints,
            index_prefix=settings.index_prefix,
            progress=self.progress,
        )
        projections = default_projections()
        # The read models' names, as the lag, the hub and the worker know them.
        self.read_models = [p.name for p in projections]
        # The documents Elasticsearch refused: read by the readModel query, /metrics
        # and the CLI without going through the worker (the store is its engine only).
        self.quarantine = Quarantine(self.engine)
        self.worker = FeedWorker(
            self.engine,
            self.search,
            projections,
            index_prefix=settings.index_prefix,
            batch_size=settings.feed_batch_size,
            poll_interval=settings.feed_poll_interval,
            linger=settings.feed_linger,
            refresh_interval=settings.feed_refresh_interval,
            lease=timedelta(seconds=settings.feed_lease_seconds),
            partitions=settings.feed_partitions,
            # Other processes' change hubs hear of each cycle in its checkpoints' commit.
            notify_channel=APPLIED_CHANNEL if is_postgres(self.engine) else None,
        )
        run_worker = settings.runs_embedded_worker if embedded_worker is None else embedded_worker
        self.runs_worker = run_worker
        self.hub = ChangeHub(
            self.engine,
            self.checkpoints,
            self.read_models,
            queue_size=settings.subscriber_queue_size,
            poll_interval=settings.feed_poll_interval,
        )
        self.worker.listeners.append(self._applied)
        self._worker_task: asyncio.Task[None] | None = None
        self._listener: PostgresWakeup | None = None
        self._hub_running = False
        self._lag: asyncio.Future[list[ProjectionLag]] | None = None

    @staticmethod
    def now() -> datetime:
        return datetime.now(UTC)

    def committed(self) -> None:
        """A command committed in this process: the embedded worker need not wait for its poll."""
        if self._worker_task is not None:
            self.worker.wake()

    async def document(self, projection: Projection[D], id: str) -> D | None:
        """The document `projection` builds for `id` from the write database as it
        stands now: what a mutation answers, so that its object is the read model's."""
        async with self.engine.connect() as conn:
            conn = await conn.execution_options(sqlite_readonly=True)
            return (await projection.documents(conn, [id])).get(id)

    async def _applied(self, _applied: Applied) -> None:
        """A batch is searchable: tell this process's subscribers and parked reads
        (the worker's NOTIFY, sent with its checkpoints, tells other processes')."""
        self.read_side_moved()

    def read_side_moved(self) -> None:
        self.progress.poke()
        if self._hub_running:
            self.hub.poke()

    async def start(self, *, subscriptions: bool = True) -> None:
        """Create missing indexes; start the change hub and, if embedded, the worker.

        An unreachable Elasticsearch does not stop the API from starting: writes
        still work, /readyz says what is missing, and the worker creates the
        indexes once the node answers.
        """
        try:
            await ensure_indexes(self.search, self.settings.index_prefix)
        except Exception as error:
            log.warning("Elasticsearch not ready (%s); the worker will create indexes", error)
        # Parked consistency waits hear of other processes' workers too, with or
        # without subscriptions.
        channels: dict[str, Callable[[], None]] = {APPLIED_CHANNEL: self.read_side_moved}
        if subscriptions:
            await self.hub.start()
            self._hub_running = True
        if self.runs_worker:
            channels[NOTIFY_CHANNEL] = self.worker.wake
            self._worker_task = asyncio.create_task(self.worker.run(), name="feed-worker")
        if is_postgres(self.engine):
            self._listener = PostgresWakeup(self.engine.url, channels)
            self._listener.start()

    async def stop(self) -> None:
        if self._listener is not None:
            await self._listener.stop()
            self._listener = None
        if self._worker_task is not None:
            self.worker.stop()
            try:
                await asyncio.wait_for(self._worker_task, timeout=10)
            except TimeoutError:
                self._worker_task.cancel()
            self._worker_task = None
        else:
            # run_once() outside the loop (a rebuild's catch-up, tests) may hold leases too.
            await self.worker.release_leases()
        if self._hub_running:
            await self.hub.stop()
            self._hub_running = False
        await self.progress.stop()
        await self.search.close()
        await self.engine.dispose()

    async def readiness(self) -> dict[str, str]:
        """What keeps this process from serving, by dependency (empty: ready): the
        write database answers a read of the outbox, and Elasticsearch's cluster is
        not red. Each gets 3 seconds; the problem says what failed (for /readyz)."""
        problems: dict[str, str] = {}
        try:
            async with asyncio.timeout(3):
                async with read_only(self.engine) as conn:
                    await outbox.head(conn)
        except Exception as error:
            problems["write_database"] = f"{type(error).__name__}: {error}"[:300]
        try:
            async with asyncio.timeout(3):
                health = await self.search.cluster.health()
            if health["status"] == "red":
                problems["elasticsearch"] = "cluster health is red"
        except Exception as error:
            problems["elasticsearch"] = f"{type(error).__name__}: {error}"[:300]
        return problems

    async def lag(self) -> list[ProjectionLag]:
        """Each projection's lag, read from the write database in a few short reads;
        WriteDatabaseUnavailable when it cannot be read.

        Callers that ask while a read is under way share it: the read holds a
        pooled connection, and `readModel` is open to every client, so twenty at
        once would otherwise take twenty. Its answer is at most one read older than
        the question."""
        if self._lag is None or self._lag.done():
            self._lag = asyncio.ensure_future(self._read_lag())
            # Retrieved here too, so a read whose callers all gave up logs nothing.
            self._lag.add_done_callback(lambda done: done.cancelled() or done.exception())
        # Shielded: one caller's cancellation (its deadline) must not end the others'.
        return await asyncio.shield(self._lag)

    async def _read_lag(self) -> list[ProjectionLag]:
        try:
            return await read_lag(self.engine, self.read_models, self.now())
        except WriteDatabaseUnavailable:
            raise
        except Exception as error:
            if not is_database_fault(error):
                raise
            raise WriteDatabaseUnavailable(str(error).splitlines()[0]) from error


def build(settings: Settings | None = None, *, embedded_worker: bool | None = None) -> Bicameral:
    return Bicameral(settings or Settings.from_env(), embedded_worker=embedded_worker)
