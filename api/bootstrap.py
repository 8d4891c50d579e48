"""The composition root: builds every service from one `Settings`.

Tests call `build` with other settings; nothing else constructs engines,
clients or workers.

The node's role (NODE_ROLE, `serve --role`) decides what it starts:

- `all` (the default): everything, as before roles existed.
- `query`: reads only. It never connects to the write database to start or
  to answer a read: consistency waits, `readModel` and /readyz read the
  progress the workers publish in Elasticsearch (readmodel/published.py).
  No embedded worker. Subscriptions need the outbox, so the change hub (and
  the LISTEN connection) start in the background once the write database
  answers; a subscription asked before that is refused with
  WRITE_DATABASE_UNAVAILABLE, and one running while the database goes away
  keeps its socket and gets every change once it is back.
- `command`: mutations only; no index is created at start and no change hub
  runs, so it needs nothing of Elasticsearch to take a write (its payloads
  are read from the write database). Queries and subscriptions are refused
  (api/node_role.py), since a load balancer routes by role.

Every process that runs the feed worker also publishes the progress, whatever
its role, so query nodes work beside any deployment's workers.
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
from readmodel.published import (
    ProgressPublisher,
    ProgressUnreadable,
    PublishedProgress,
    PublishedQuarantine,
    ensure_progress_index,
)
from readmodel.quarantine import Quarantine
from readmodel.reader import Reader
from readmodel.setup import ensure_indexes, laid_out
from readmodel.tasks import cancel
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
        # Every node ELASTICSEARCH_URL names; a request that fails on one is retried on
        # the next. No sniffing: nodes would hand out their publish addresses, which a
        # client outside their network (a container, a load balancer) may not reach.
        self.search = AsyncElasticsearch(
            settings.elasticsearch_hosts, request_timeout=30, retry_on_timeout=True, max_retries=2
        )
        self.commands = CommandService(
            lambda: SqlUnitOfWork(self.engine),
            idempotency_ttl=timedelta(hours=settings.idempotency_ttl_hours),
        )
        self.checkpoints = Checkpoints(self.engine)
        self.role = settings.node_role
        projections = laid_out(default_projections(), settings.index_layout)
        # The read models' indexes under ELASTICSEARCH_SHARDS, _REPLICAS, _REFRESH_INTERVAL.
        self.indexes = {p.name: p.index for p in projections}
        # The read models' names, as the lag, the hub and the worker know them.
        self.read_models = [p.name for p in projections]
        # The progress the workers publish: what a query node knows of the read side.
        self.published = PublishedProgress(self.search, settings.index_prefix, self.read_models)
        # The one watcher every consistency wait of this process parks on.
        if self.role == "query":
            self.progress = Progress(
                self.engine,
                source=self.published.positions,
                unreadable=lambda: ProgressUnreadable("the published progress cannot be read"),
            )
        else:
            self.progress = Progress(self.engine)
        self.reader = Reader(
            self.search,
            self.checkpoints,
            index_prefix=settings.index_prefix,
            progress=self.progress,
        )
        # The documents Elasticsearch refused: read by the readModel query, /metrics
        # and the CLI without going through the worker (the store is its engine only).
        self.quarantine = (
            PublishedQuarantine(self.engine, self.published)
            if self.role == "query"
            else Quarantine(self.engine)
        )
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
        # Wherever the worker runs, it publishes how far it has come (for query nodes).
        self.publisher = ProgressPublisher(
            self.search,
            self.engine,
            self.read_models,
            index_prefix=settings.index_prefix,
            owner=self.worker.owner,
            interval=settings.feed_poll_interval,
            replicas=settings.index_layout.replicas,
        )
        self.worker.listeners.append(self.publisher.applied)
        self._worker_task: asyncio.Task[None] | None = None
        self._listener: PostgresWakeup | None = None
        self._hub_running = False
        self._hub_starter: asyncio.Task[None] | None = None
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
            if self.engine.dialect.name == "sqlite":
                conn = await conn.execution_options(sqlite_readonly=True)
            else:
                # Every projection's `documents` is one statement, and one statement
                # sees one snapshot with or without a transaction around it: without
                # one, the read saves its BEGIN and ROLLBACK round trips (2 of a
                # createProduct's 9; docs/performance.md, "3 and 8 on PostgreSQL").
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            return (await projection.documents(conn, [id])).get(id)

    async def _applied(self, _applied: Applied) -> None:
        """A batch is searchable: tell this process's subscribers and parked reads
        (the worker's NOTIFY, sent with its checkpoints, tells other processes')."""
        self.read_side_moved()

    def read_side_moved(self) -> None:
        self.progress.poke()
        if self._hub_running:
            self.hub.poke()

    @property
    def hub_running(self) -> bool:
        return self._hub_running

    async def start(self, *, subscriptions: bool = True) -> None:
        """Create missing indexes; start the change hub and, if embedded, the worker
        (what each role starts: see the module's docstring).

        An unreachable Elasticsearch does not stop the API from starting: writes
        still work, /readyz says what is missing, and the worker creates the
        indexes once the node answers.
        """
        if self.role != "command":
            try:
                await ensure_indexes(self.search, self.settings.index_prefix, self.indexes)
                await ensure_progress_index(
                    self.search,
                    self.settings.index_prefix,
                    replicas=self.settings.index_layout.replicas,
                )
            except Exception as error:
                log.warning("Elasticsearch not ready (%s); the worker will create indexes", error)
        if self.role == "query":
            if subscriptions:
                self._hub_starter = asyncio.create_task(self._start_hub(), name="hub-starter")
            return
        # Parked consistency waits hear of other processes' workers too, with or
        # without subscriptions.
        channels: dict[str, Callable[[], None]] = {APPLIED_CHANNEL: self.read_side_moved}
        if subscriptions and self.role == "all":
            await self.hub.start()
            self._hub_running = True
        if self.runs_worker:
            channels[NOTIFY_CHANNEL] = self.worker.wake
            self._worker_task = asyncio.create_task(self.worker.run(), name="feed-worker")
            self.publisher.start()
        if is_postgres(self.engine):
            self._listener = PostgresWakeup(self.engine.url, channels)
            self._listener.start()

    async def _start_hub(self) -> None:
        """A query node's change hub, started once the write database answers (it
        reads the outbox); then the LISTEN that wakes it and parked waits."""
        failing = False
        while True:
            try:
                await self.hub.start()
            except Exception as error:
                if not failing:
                    log.warning("subscriptions wait for the write database: %s", error)
                failing = True
                await asyncio.sleep(max(self.settings.feed_poll_interval, 0.25))
                continue
            self._hub_running = True
            if is_postgres(self.engine):
                self._listener = PostgresWakeup(
                    self.engine.url, {APPLIED_CHANNEL: self.read_side_moved}
                )
                self._listener.start()
            return

    async def stop(self) -> None:
        starter, self._hub_starter = self._hub_starter, None
        await cancel(starter)
        await self.publisher.stop()
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
        not red. Each gets 3 seconds; the problem says what failed (for /readyz).

        Per role: a command node needs only the write database; a query node only
        Elasticsearch, with the published progress readable (a realtime get)."""
        problems: dict[str, str] = {}
        if self.role != "query":
            await self._write_database_ready(problems)
        if self.role != "command":
            await self._search_ready(problems)
        return problems

    async def _write_database_ready(self, problems: dict[str, str]) -> None:
        try:
            async with asyncio.timeout(3):
                async with read_only(self.engine) as conn:
                    await outbox.head(conn)
        except Exception as error:
            problems["write_database"] = f"{type(error).__name__}: {error}"[:300]

    async def _search_ready(self, problems: dict[str, str]) -> None:
        try:
            async with asyncio.timeout(3):
                health = await self.search.cluster.health()
            if health["status"] == "red":
                problems["elasticsearch"] = "cluster health is red"
        except Exception as error:
            problems["elasticsearch"] = f"{type(error).__name__}: {error}"[:300]
        if self.role == "query" and "elasticsearch" not in problems:
            try:
                async with asyncio.timeout(3):
                    await self.published.read()
            except Exception as error:
                problems["read_progress"] = f"{type(error).__name__}: {error}"[:300]

    async def lag(self) -> list[ProjectionLag]:
        """Each projection's lag, read from the write database in a few short reads;
        WriteDatabaseUnavailable when it cannot be read.

        Callers that ask while a read is under way share it: the read holds a
        pooled connection, and `readModel` is open to every client, so twenty at
        once would otherwise take twenty. Its answer is at most one read older than
        the question."""
        if self._lag is None or self._lag.done():
            read = self._published_lag() if self.role == "query" else self._read_lag()
            self._lag = asyncio.ensure_future(read)
            # Retrieved here too, so a read whose callers all gave up logs nothing.
            self._lag.add_done_callback(lambda done: done.cancelled() or done.exception())
        # Shielded: one caller's cancellation (its deadline) must not end the others'.
        return await asyncio.shield(self._lag)

    async def _published_lag(self) -> list[ProjectionLag]:
        """A query node's lag, from the published progress: the figures as the
        worker saw them, the oldest event's age grown by the time since (an upper
        bound, exact while nothing was applied since); the owner is the worker
        that published them."""
        found = await self.published.read()
        now = self.now()
        figures = []
        for name in self.read_models:
            published = found.get(name)
            if published is None:
                figures.append(ProjectionLag(name, 0, 0, 0, 0.0, None))
                continue
            behind = max(0, published.head - published.position)
            age = published.lag_seconds
            if behind:
                age += max(0.0, (now - published.published_at).total_seconds())
            figures.append(
                ProjectionLag(
                    name, published.position, published.head, behind, age, published.owner
                )
            )
        return figures

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
