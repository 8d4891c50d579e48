"""How far each read model has come, published in Elasticsearch for query nodes.

A query node (`NODE_ROLE=query`) serves reads without the write database, so
it cannot read the checkpoints. Every feed worker therefore publishes, into
the index `<prefix>-progress`, one document per read model (its id: the read
model's name):

- `position`: `Checkpoints.reached([name])`, the position up to which the
  read model has applied every event and made it searchable. That is all a
  consistency token needs.
- `head`, `lagSeconds`: the outbox head and the age of the oldest event the
  read model had not applied, as the worker saw them; `quarantined`: its
  documents Elasticsearch refused and nobody has superseded (read after the
  position, so it counts every entry at or below it).
- `owner` (the publishing worker), `publishedAt`.

It is written with external versioning, version = position, in its
`external_gte` form: an older position is refused (409, ignored), so the
published position never goes backward whatever order workers publish in;
an equal one is taken, so the head and the lag keep moving while a read
model is stuck. (A rebuild's reset checkpoint is lower than the serving
index's position and is not published: the serving index still holds what
the old position says, as readmodel/progress.py explains.)

When it is published: right after the worker's listeners hear that a read
model moved, at most once per `spacing` (20 a second), and on a sweep every
poll interval, so a worker that crashed between a checkpoint's advance and
its publish, or a publish that failed, is healed by the next sweep of any
worker. The publisher runs in its own task: a failing Elasticsearch never
stalls or fails the feed, it logs once per outage and tries at the next sweep.

Read back with a realtime multi-get: no refresh is needed, and what a query
node reads is as fresh as the last publish. A read model without a document
stands at position 0, which can only make a node wait longer, never answer
too early.

A read model that the write database never projected (a wiped SQLite file
beside a node that kept its indexes) has its document deleted where
readmodel/setup.py starts it afresh. Elasticsearch keeps the deleted
version for `index.gc_deletes` (60 s), so publishing its new, lower
positions is refused (409, ignored) until then: meanwhile query nodes see
position 0 for it, the safe side.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from elasticsearch import AsyncElasticsearch, BadRequestError, NotFoundError
from sqlalchemy.ext.asyncio import AsyncEngine

from readmodel.lag import read_lag
from readmodel.quarantine import Entry, Quarantine
from readmodel.tasks import cancel

__all__ = [
    "PROGRESS_MAPPINGS",
    "ProgressPublisher",
    "ProgressUnreadable",
    "Published",
    "PublishedProgress",
    "PublishedQuarantine",
    "ensure_progress_index",
    "forget_published",
    "progress_index",
    "write_published",
]

if TYPE_CHECKING:  # readmodel.feed imports readmodel.setup, which imports this module
    from readmodel.feed import Applied

log = logging.getLogger(__name__)

# Explicit and strict: nothing the bare integ-test distribution lacks, no dynamic fields.
PROGRESS_MAPPINGS: dict[str, Any] = {
    "dynamic": "strict",
    "properties": {
        "position": {"type": "long"},
        "head": {"type": "long"},
        "lagSeconds": {"type": "double"},
        "quarantined": {"type": "integer"},
        "owner": {"type": "keyword"},
        "publishedAt": {"type": "date"},
    },
}
# One small document per read model: one shard is plenty. Replicas follow
# ELASTICSEARCH_REPLICAS, so losing the node that holds it leaves query nodes ready.
_SHARDS = 1


def progress_index(prefix: str) -> str:
    """The alias `<prefix>-progress`, over the index `<prefix>-progress-1`. Neither
    fits `<prefix>-<read model>[-<digest>[-<generation>]]`, so no read model's
    alias or index pattern (readmodel/indexes.py, readmodel/setup.py) takes it
    for its own. Written through the alias with `require_alias`, so a publish
    never auto-creates it with a dynamic mapping when it is missing."""
    return f"{prefix}-progress"


async def ensure_progress_index(
    client: AsyncElasticsearch, prefix: str, *, replicas: int = 0
) -> None:
    """Create the progress index and its alias unless they exist (never rebuilt),
    with `replicas` copies, which an existing one takes too (a dynamic setting)."""
    alias = progress_index(prefix)
    physical = f"{alias}-1"
    settings = {"number_of_shards": _SHARDS, "number_of_replicas": replicas}
    try:
        await client.indices.create(index=physical, mappings=PROGRESS_MAPPINGS, settings=settings)
    except BadRequestError as error:
        if error.error != "resource_already_exists_exception":
            raise
        await client.indices.put_settings(index=physical, settings={"number_of_replicas": replicas})
    await client.indices.put_alias(index=physical, name=alias)
    await client.cluster.health(index=physical, wait_for_status="yellow", timeout="30s")


async def forget_published(client: AsyncElasticsearch, prefix: str, names: Sequence[str]) -> None:
    """Delete the published progress of `names` (read models started afresh)."""
    for name in names:
        with contextlib.suppress(NotFoundError):
            await client.delete(index=progress_index(prefix), id=name)


@dataclass(frozen=True)
class Published:
    name: str
    position: int
    head: int
    lag_seconds: float
    quarantined: int
    owner: str | None
    published_at: datetime

    def body(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "head": self.head,
            "lagSeconds": self.lag_seconds,
            "quarantined": self.quarantined,
            "owner": self.owner,
            "publishedAt": self.published_at.isoformat(),
        }

    @classmethod
    def from_source(cls, name: str, source: Mapping[str, Any]) -> Published:
        return cls(
            name,
            int(source["position"]),
            int(source["head"]),
            float(source["lagSeconds"]),
            int(source.get("quarantined") or 0),
            source.get("owner"),
            datetime.fromisoformat(source["publishedAt"]),
        )


class ProgressUnreadable(Exception):
    """The progress index cannot be read (missing, or Elasticsearch refused)."""


class PublishedProgress:
    """A query node's view of the published progress, as its last read found it.

    Not the furthest ever read: a deleted document (a read model started afresh)
    must read as absent. Whoever needs monotony keeps it (readmodel/progress.py
    keeps the highest position per read model), and `PublishedQuarantine.at`
    trusts a count only with a position at or past the token."""

    def __init__(self, client: AsyncElasticsearch, prefix: str, names: Sequence[str]) -> None:
        self.client = client
        self.prefix = prefix
        self.names = list(names)
        self.last: dict[str, Published] = {}

    async def read(self) -> dict[str, Published]:
        """Every read model's document (absent: none published). Raises
        ProgressUnreadable when the index cannot be read."""
        try:
            found = await self.client.mget(
                index=progress_index(self.prefix), ids=self.names, realtime=True
            )
        except NotFoundError as error:
            raise ProgressUnreadable(f"{progress_index(self.prefix)} is missing") from error
        read: dict[str, Published] = {}
        for doc in found["docs"]:
            if "error" in doc:
                raise ProgressUnreadable(str(doc["error"].get("type", doc["error"]))[:200])
            if doc.get("found"):
                read[doc["_id"]] = Published.from_source(doc["_id"], doc["_source"])
        self.last = read
        return dict(read)

    async def positions(self, names: Sequence[str]) -> tuple[dict[str, int], int | None]:
        """Progress's source on a query node: positions by read model, and no head
        (the published head may be older than a token a command node just gave,
        so it cannot say a token is beyond reach)."""
        read = await self.read()
        return {name: read[name].position for name in names if name in read}, None


class PublishedQuarantine(Quarantine):
    """A query node's quarantine: `counts` is the published one, and `at` answers
    from it when no document of the read models is quarantined (no
    write-database read); only otherwise does it ask the write database. The
    operator's commands (list, retry, drop) go to the write database as ever."""

    def __init__(self, engine: AsyncEngine, published: PublishedProgress) -> None:
        super().__init__(engine)
        self.published = published

    async def counts(self) -> dict[str, int]:
        """Read model -> quarantined documents, as last published (for /metrics)."""
        found = await self.published.read()
        return {name: p.quarantined for name, p in found.items() if p.quarantined}

    async def at(self, position: int, names: Any) -> list[Entry]:
        last = self.published.last
        if all(
            name in last and last[name].position >= position and last[name].quarantined == 0
            for name in names
        ):
            return []
        return await super().at(position, names)


class ProgressPublisher:
    """Publishes each read model's progress from a worker's process (see module)."""

    def __init__(
        self,
        client: AsyncElasticsearch,
        engine: AsyncEngine,
        names: Sequence[str],
        *,
        index_prefix: str,
        owner: str,
        interval: float,
        replicas: int = 0,
        spacing: float = 0.05,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.client = client
        self.engine = engine
        self.quarantine = Quarantine(engine)
        self.names = list(names)
        self.prefix = index_prefix
        self.owner = owner
        self.interval = interval
        self.replicas = replicas
        self.spacing = spacing
        self.clock = clock
        self.failing = False
        self._ready = False  # the index made sure of (again after any failure)
        self._poke = asyncio.Event()
        self._last = 0.0
        self._task: asyncio.Task[None] | None = None

    async def applied(self, _applied: Applied) -> None:
        """A FeedWorker listener: costs the feed one Event.set, nothing more."""
        self._poke.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="progress-publisher")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel(task)

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._poke.wait()
            # At most one publish per `spacing`: pokes meanwhile fold into the next.
            await asyncio.sleep(max(0.0, self._last + self.spacing - time.monotonic()))
            self._poke.clear()
            self._last = time.monotonic()
            try:
                await self.publish()
            except Exception as error:
                if not self.failing:  # once per outage, not once per sweep
                    log.warning("cannot publish the read models' progress: %s", error)
                self.failing = True
                self._ready = False
            else:
                self.failing = False

    async def read(self) -> list[Published]:
        """What to publish, from the write database: each read model's lag as
        `readmodel/lag.read_lag` reads it for `readModel` (its furthest-behind
        partition, which is `Checkpoints.reached`, the head and the age of the
        oldest event not applied), and the quarantine counts."""
        now = self.clock()
        lags = await read_lag(self.engine, self.names, now)
        counts = await self.quarantine.counts()
        return [
            Published(
                lag.name,
                lag.position,
                max(lag.head, lag.position),
                lag.lag_seconds,
                counts.get(lag.name, 0),
                self.owner,
                now,
            )
            for lag in lags
        ]

    async def publish(self) -> list[Published]:
        """Read and publish every read model's progress; what was sent."""
        if not self._ready:
            await ensure_progress_index(self.client, self.prefix, replicas=self.replicas)
            self._ready = True
        figures = await self.read()
        await write_published(self.client, self.prefix, figures)
        return figures


async def write_published(
    client: AsyncElasticsearch, prefix: str, figures: Sequence[Published]
) -> None:
    """One bulk request; a document refused as older than the stored one (409) is
    the point of the versioning, any other refusal an error."""
    operations: list[dict[str, Any]] = []
    for figure in figures:
        operations.append(
            {
                "index": {
                    "_index": progress_index(prefix),
                    "_id": figure.name,
                    "version": figure.position,
                    "version_type": "external_gte",
                    # Never auto-create it with a dynamic mapping: the setup makes it.
                    "require_alias": True,
                }
            }
        )
        operations.append(figure.body())
    answer = await client.bulk(operations=operations)
    if not answer["errors"]:
        return
    for item in answer["items"]:
        result = item["index"]
        if result.get("status", 200) >= 300 and result["status"] != 409:
            raise RuntimeError(f"progress of {result['_id']} refused: {result.get('error')}")
