"""Rebuild a read model from the write database while the old index keeps serving.

The steps, for one read model served by the alias `<prefix>-<name>`:

(a) Create a new physical index, `<prefix>-<name>-<digest>-<generation>`, one
    generation above every index of this read model, with the code's mapping
    (so a rebuild under an unchanged mapping still gets a new index).
(b) Point `<prefix>-<name>-next` at it. From then on the feed worker writes
    every batch to the alias and to `-next` (`BulkWriter.write(also=...)`).
(c) Read the outbox head H0, then load every document from the write
    database, in id order, a page at a time, with external version H0,
    unrefreshed; one refresh at the end. Each page is read in a short read of
    its own, the next one while this one is being written. `progress(loaded,
    total)` is told after every written page.
(d) Read the head H1 and wait until the projection's checkpoint has reached
    it: drive the worker in this process while no other live worker holds the
    projection's lease, else poll the checkpoint.
(e) One atomic `_aliases` call: the alias onto the new index, off the old
    one, and `-next` removed.
(f) After a short grace, for searches and batches that resolved the alias
    just before (e), delete the old index (and older leftovers).

Why the new index misses nothing. Take an event at position p.
- If the worker wrote its batch to `-next`, the new index has it, with
  version p.
- If not, the worker looked `-next` up and did not find it. It looks it up
  when it writes, after it has read the batch's events, so the event was
  committed before `-next` existed, before H0 was read. The load reads state
  after reading H0, and state commits with its events, so the loaded
  document includes the event's effect.
H0 is the outbox's settled position (`outbox.settled`), not its head: every
event at or below it has committed (or never will) before the load reads.
On PostgreSQL writers commit in parallel and a position below the head may
still be in flight; a version H0 from the head could then hide an event the
load did not see. Any event that commits after H0 was read is above it, and
the worker writes it to `-next` with its own, higher version.
The two writers may reach a document in either order; external versioning
makes the order irrelevant. The load writes the state read after H0 with
version H0; the worker writes, for an event at p, the state read after p
committed, with version p. Elasticsearch keeps the highest version: for
p < H0 the loaded state is the newer one and wins whenever it arrives; for
p > H0 the worker's wins whenever it arrives, and its state has every event up
to p (the feed reads p only once every position up to it is final); for p == H0
both are states from after H0, and later events follow with higher versions.
So from the end of (c) on, the new index holds everything the old one does;
(d) is not needed for that, but it makes the rebuild end caught up, and fail
loudly rather than swap when nothing feeds the read model.

That needs the worker's `-next` lookup to be fresh: a "not found" must come
from after the batch was read. It is one HEAD request per written batch; a
cached answer valid for t seconds would need the rebuild to wait t between
(b) and reading H0. Writes to `-next` use `require_alias`, so once (e) has
removed it a batch that still names it skips it instead of auto-creating an
index of that name.

Deletes: a delete at p > H0 leaves a tombstone with version p that refuses
the load's older write for `index.gc_deletes` (60 s by default); the load
reads at most one page ahead, so it writes each page as soon as the bulk
request of the page before has ended, seconds after reading it, well within
that.

Interrupted (Ctrl-C, a crash, a timeout in (d)) anywhere before (e), the old
index keeps serving and `-next` stays, still fed by the worker. The next
rebuild finds `-next` on an index of the code's digest, reuses it and loads
again, which external versioning makes idempotent; an index of another digest
behind `-next` is dropped and a new one made. Interrupted between (e) and (f),
the old index is left over; the next rebuild deletes it. Two rebuilds of one
read model at once: `-next` is added with `is_write_index`, which
Elasticsearch refuses for a second index, so the later one joins the first's
index; whichever swaps second finds the work done.

The loaded documents carry H0 as their `position` too: "this document reflects
the write database as of H0 at least", the only position known for them.

A document Elasticsearch refuses for itself (`DocumentsRefused`: a term over
Lucene's limit, a value the mapping does not take) does not stop the load; the
page's other documents went in. After (d), just before (e), each is recorded
in the quarantine (readmodel/quarantine.py) as the feed records its own: index
the new index's name, version and one position H0, the only ones known. Before
the swap, so a crash in between leaves entries for documents the old index may
hold (a retry clears them), never a document missing unrecorded. The new index
goes live without them, as the feed would leave them. After (e), every active
entry of the read model whose document the new index holds at the entry's
version or newer (the row was fixed and the load wrote it) is superseded.
More than `max_refused` refusals stop the rebuild before (e), nothing
recorded: so many say the mapping is wrong, not the documents. Any other
failure of a page fails the load, as before.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from elasticsearch import ApiError, AsyncElasticsearch, NotFoundError
from sqlalchemy.ext.asyncio import AsyncEngine

from readmodel.bulk import BulkWriter, DocumentsRefused
from readmodel.checkpoints import Checkpoints
from readmodel.feed import FeedWorker
from readmodel.indexes import INDEXES, IndexDefinition
from readmodel.projections import Action, IndexDocument, Projection
from readmodel.quarantine import Quarantine, Refusal, settle
from readmodel.setup import (
    AliasState,
    alias_state,
    create_index,
    ensure_index,
    generation_of,
    next_generation,
    physical_indexes,
)
from writemodel import outbox
from writemodel.database import read_only

__all__ = ["Progress", "RebuildError", "RebuildResult", "abandon", "rebuild"]

log = logging.getLogger(__name__)

# Told (documents loaded, documents to load) after every page of the load.
Progress = Callable[[int, int], None]

# mget requests of at most this many ids, when the swap settles the quarantine.
_LOOKUP = 500


class RebuildError(RuntimeError):
    """The rebuild stopped; the old index still serves."""


@dataclass(frozen=True)
class RebuildResult:
    name: str
    # The index that served before (None: the read model had no index yet).
    old_index: str | None
    new_index: str
    # True when it went on with an interrupted rebuild's index.
    resumed: bool
    # Every document the load sent, refused ones included.
    documents: int
    # Of those, refused by Elasticsearch for themselves: quarantined, missing
    # from (or stale in) the new index.
    quarantined: int
    # The outbox head read before the load: the version of every loaded document.
    loaded_as_of: int
    # The checkpoint the read model had reached when it went live.
    caught_up_to: int
    seconds: float

    @property
    def rate(self) -> float:
        """Documents loaded per second, over the whole rebuild."""
        return self.documents / self.seconds if self.seconds > 0 else 0.0


async def rebuild(
    name: str,
    *,
    engine: AsyncEngine,
    client: AsyncElasticsearch,
    prefix: str,
    worker: FeedWorker,
    checkpoints: Checkpoints,
    progress: Progress | None = None,
    page_size: int = 1000,
    catch_up_timeout: float = 300.0,
    retire_after: float = 1.0,
    max_refused: int = 1000,
) -> RebuildResult:
    """Build a new index for read model `name` and put it live (see the module docstring).

    More than `max_refused` documents refused for themselves stop it (`RebuildError`)."""
    started = time.monotonic()
    index, projection = _definition(name), _projection(worker, name)
    # Under the layout the settings gave the worker's projections: how a new shard count comes in.
    index = index.laid_out(projection.index.layout)
    target, old, resumed = await _prepare(client, prefix, index)
    log.info("rebuilding %s into %s%s", name, target, " (resumed)" if resumed else "")
    loaded_as_of = await _settled(engine)
    documents, refusals = await _load(
        engine,
        client,
        projection,
        target,
        loaded_as_of,
        page_size,
        progress or _silent,
        max_refused,
    )
    caught_up_to = await _catch_up(worker, checkpoints, name, await _head(engine), catch_up_timeout)
    if refusals:
        # Before the swap: a crash between the two leaves entries for documents the
        # old index may still hold (a retry clears them), never a document missing
        # from the serving index unrecorded.
        async with engine.begin() as conn:
            await settle(conn, {name}, refusals, {}, _now())
        log.warning(
            "%s: %d documents refused by Elasticsearch, quarantined; the new index goes "
            "live without them (`bicameral readmodel quarantine list`)",
            name,
            len(refusals),
        )
    await _swap(client, prefix, index, target, old)
    log.info("%s now served by %s", name, target)
    await _supersede_served(client, Quarantine(engine), name, target)
    await asyncio.sleep(retire_after)
    await _retire(client, prefix, index, target)
    return RebuildResult(
        name=name,
        old_index=old,
        new_index=target,
        resumed=resumed,
        documents=documents,
        quarantined=len(refusals),
        loaded_as_of=loaded_as_of,
        caught_up_to=caught_up_to,
        seconds=time.monotonic() - started,
    )


async def abandon(client: AsyncElasticsearch, prefix: str, name: str) -> str | None:
    """Give up an interrupted rebuild: drop `-next` and its index; the index dropped, if any."""
    index = _definition(name)
    state = await alias_state(client, prefix, index)
    return await _drop_building(client, prefix, index, state)


def _silent(loaded: int, total: int) -> None:
    pass


def _now() -> datetime:
    return datetime.now(UTC)


def _definition(name: str) -> IndexDefinition:
    try:
        return INDEXES[name]
    except KeyError:
        raise RebuildError(f"no read model named {name!r}; there are {sorted(INDEXES)}") from None


def _projection(worker: FeedWorker, name: str) -> Projection:
    for projection in worker.projections:
        if projection.name == name:
            return projection
    raise RebuildError(f"the worker runs no projection {name!r}")


async def _settled(engine: AsyncEngine) -> int:
    async with read_only(engine) as conn:
        return await outbox.settled(conn)


async def _head(engine: AsyncEngine) -> int:
    async with read_only(engine) as conn:
        position, _ = await outbox.head(conn)
        return position


async def _prepare(
    client: AsyncElasticsearch, prefix: str, index: IndexDefinition
) -> tuple[str, str | None, bool]:
    """Steps (a) and (b): the index to build, the one serving now, and whether it resumes."""
    state = await ensure_index(client, prefix, index)
    if state.building is not None:
        if state.building_digest == index.digest and state.building != state.serving:
            return state.building, state.serving, True
        # Left by a rebuild under another mapping: its documents are of no use.
        await _drop_building(client, prefix, index, state)
    target, _ = await next_generation(client, prefix, index)
    await create_index(client, index, target)
    try:
        await client.indices.update_aliases(
            actions=[
                {
                    "add": {
                        "index": target,
                        "alias": index.next_alias(prefix),
                        "is_write_index": True,
                    }
                }
            ]
        )
    except ApiError as error:
        if error.error != "illegal_state_exception":  # "more than one write index"
            raise
        await client.indices.delete(index=target, ignore_unavailable=True)
        state = await alias_state(client, prefix, index)
        if state.building is None or state.building_digest != index.digest:
            raise RebuildError(f"another rebuild of {index.name} is under way") from error
        log.info("another rebuild of %s is under way; joining it", index.name)
        return state.building, state.serving, True
    return target, state.serving, False


async def _drop_building(
    client: AsyncElasticsearch, prefix: str, index: IndexDefinition, state: AliasState
) -> str | None:
    if state.building is None:
        return None
    try:
        await client.indices.update_aliases(
            actions=[{"remove": {"index": state.building, "alias": index.next_alias(prefix)}}]
        )
    except NotFoundError:
        pass  # gone already
    if state.building == state.serving:
        return None
    await client.indices.delete(index=state.building, ignore_unavailable=True)
    return state.building


async def _count(engine: AsyncEngine, projection: Projection) -> int:
    async with read_only(engine) as conn:
        return await projection.count(conn)


async def _page(
    engine: AsyncEngine, projection: Projection, after: str, page_size: int, version: int
) -> tuple[str, list[Action]] | None:
    """The page of the load after id `after`: its last id and its actions; None past the end."""
    # One short read per page: no transaction held open for the whole load.
    async with read_only(engine) as conn:
        ids = await projection.all_ids(conn, after, page_size)
        if not ids:
            return None
        docs = await projection.documents(conn, ids)
    actions: list[Action] = [
        IndexDocument(id, version, {**doc, "position": version}) for id, doc in docs.items()
    ]
    return ids[-1], actions


async def _load(
    engine: AsyncEngine,
    client: AsyncElasticsearch,
    projection: Projection,
    target: str,
    version: int,
    page_size: int,
    progress: Progress,
    max_refused: int,
) -> tuple[int, list[Refusal]]:
    """Step (c): every document as the write database holds it now, with version
    `version`; the documents sent, and those Elasticsearch refused for themselves."""
    writer = BulkWriter(client)
    total = await _count(engine, projection)
    progress(0, total)
    loaded = 0
    refusals: list[Refusal] = []
    # One page read ahead, no more: the next page is read while this one's bulk
    # request is in flight, so a page is written at most one bulk request after its read.
    reading = asyncio.create_task(_page(engine, projection, "", page_size, version))
    try:
        while (page := await reading) is not None:
            last, actions = page
            reading = asyncio.create_task(_page(engine, projection, last, page_size, version))
            try:
                await writer.write(target, actions, refresh=False)
            except DocumentsRefused as refused:  # the page's other documents went in
                refusals += _refusals(projection.name, version, refused)
                _note_refused(projection.name, refused, len(refusals), max_refused)
            loaded += len(actions)
            progress(loaded, max(total, loaded))
    finally:
        # After a failed write or progress call, or a cancel: the read ahead is
        # stopped and awaited, so no task outlives the load (nor its error unseen).
        reading.cancel()
        await asyncio.gather(reading, return_exceptions=True)
    await client.indices.refresh(index=target)
    return loaded, refusals


def _refusals(name: str, version: int, refused: DocumentsRefused) -> list[Refusal]:
    """As quarantine entries. The load knows no event behind a document, only the
    head it read: `version` is the entry's version and its one position."""
    return [
        Refusal(name, r.target, r.action.id, version, [version], r.error_type, r.reason)
        for r in refused.refused
    ]


def _note_refused(name: str, refused: DocumentsRefused, so_far: int, max_refused: int) -> None:
    """Log a page's refusals; stop the load once there are too many to be the
    documents' fault: a mapping that refuses that much should not go live."""
    first = refused.refused[0]
    log.warning(
        "%s: %d documents of this page refused by Elasticsearch, %d so far (%s: %s: %s); "
        "they will be quarantined",
        name,
        len(refused.refused),
        so_far,
        first.action.id,
        first.error_type,
        first.reason[:300],
    )
    if so_far > max_refused:
        raise RebuildError(
            f"Elasticsearch refused {so_far} documents of {name}, more than {max_refused}; "
            f"the mapping may be wrong (first: {first.action.id}: {first.error_type}: "
            f"{first.reason[:300]})"
        )


async def _supersede_served(
    client: AsyncElasticsearch,
    store: Quarantine,
    name: str,
    target: str,
) -> None:
    """After the swap: the entries of `name` whose document the new index holds at
    the entry's version or newer are superseded, whichever index they were
    recorded for (the alias, `-next`, an older generation): nothing is missing."""
    try:
        entries = await store.active(name)
        ids = sorted({entry.document_id for entry in entries})
        present: dict[str, int] = {}
        for start in range(0, len(ids), _LOOKUP):
            found = await client.mget(index=target, ids=ids[start : start + _LOOKUP], source=False)
            present |= {doc["_id"]: doc["_version"] for doc in found["docs"] if doc.get("found")}
        done = await store.supersede(name, present, _now()) if present else []
    except Exception:
        # The new index is live: failing the rebuild now would tell the operator
        # the old one still serves. The entries stay, and a retry clears them.
        log.warning("%s: could not check the quarantine against %s", name, target, exc_info=True)
        return
    if done:
        log.info("%s: %d quarantined documents are in %s; superseded", name, len(done), target)


async def _catch_up(
    worker: FeedWorker,
    checkpoints: Checkpoints,
    name: str,
    position: int,
    timeout: float,
) -> int:
    """Step (d): until the projection's checkpoint has reached `position`; where it got.

    The worker drives itself here or waits for whichever loop holds the lease
    (`FeedWorker.catch_up`); the deadline is the rebuild's."""
    try:
        async with asyncio.timeout(timeout):
            return await worker.catch_up(name, position)
    except TimeoutError:
        reached = (await checkpoints.get(name)).position
        raise RebuildError(
            f"the feed of {name} reached {reached}, not {position}, in {timeout:.0f}s; "
            "the old index still serves, and a new rebuild resumes this one"
        ) from None


async def _swap(
    client: AsyncElasticsearch, prefix: str, index: IndexDefinition, target: str, old: str | None
) -> None:
    """Step (e): in one atomic call, or not at all."""
    alias, next_alias = index.alias(prefix), index.next_alias(prefix)
    actions: list[dict[str, dict[str, object]]] = [{"add": {"index": target, "alias": alias}}]
    if old is not None and old != target:
        actions.append({"remove": {"index": old, "alias": alias, "must_exist": True}})
    actions.append({"remove": {"index": target, "alias": next_alias, "must_exist": True}})
    try:
        await client.indices.update_aliases(actions=actions)
    except NotFoundError as error:
        state = await alias_state(client, prefix, index)
        if state.serving == target and state.building is None:
            return  # a rebuild running alongside swapped the same index in
        raise RebuildError(f"the aliases of {index.name} moved during the rebuild") from error


async def _retire(
    client: AsyncElasticsearch, prefix: str, index: IndexDefinition, target: str
) -> None:
    """Step (f): delete the older generations, the one that served until now among them."""
    state = await alias_state(client, prefix, index)
    keep = {target, state.serving, state.building}
    alias, generation = index.alias(prefix), generation_of(index.alias(prefix), target)
    for name in await physical_indexes(client, prefix, index):
        # Only older ones: a newer one may be another rebuild's, not aliased yet.
        if name not in keep and generation_of(alias, name) < generation:
            log.info("deleting %s", name)
            await client.indices.delete(index=name, ignore_unavailable=True)


# For the CLI (`bicameral readmodel rebuild [NAME]`): build the app with
# `embedded_worker=False`, then for NAME, or every name in `INDEXES` in turn:
#
#     result = await rebuild(
#         name,
#         engine=app.engine,
#         client=app.search,
#         prefix=settings.index_prefix,
#         worker=app.worker,
#         checkpoints=app.checkpoints,
#         progress=show,  # show(loaded, total): one line rewritten with "\r"
#     )
#
# `show` works out the rate itself (loaded / seconds since the first call); the
# result has `documents`, `quarantined`, `seconds`, `rate`, `old_index` and
# `new_index` for a closing line (`quarantined` > 0: point to `bicameral
# readmodel quarantine list`). `RebuildError` is a message for the user (exit 1,
# the old index still serves); Ctrl-C is safe at any point, and running the
# command again resumes. `abandon(client, prefix, name)` drops an interrupted
# rebuild instead.
