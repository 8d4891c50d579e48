"""The change feed under faults: killed workers, a stopped node, a lease owner that
dies, and a row that is deleted, all against real PostgreSQL (SQLite too where one
machine is the point) and a real Elasticsearch.

Every test ends on the same comparison (tests/integration/faults.py): each read
model equals what the write database says, document for document, and each
document's `_version` is the position of the newest event that touched it.

What each costs on a 2-core box (more when the box is busy): the SIGKILL test
15-35 s per database, the takeover 8-15 s, the delete ~1 s per database, and the
Elasticsearch outage 70-170 s: it starts a node of its own twice (15-45 s each) and
keeps it down for 30 s. That one is the slow one, named so (`-k "not slow"` leaves
it out of a quick local run), and runs last; the suite runs it like any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import socket
import time
from collections import Counter
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from elasticsearch import ConflictError
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from api.bootstrap import Bicameral, build
from api.settings import Settings
from domain import commands as c
from domain.events import Event
from readmodel.bulk import BulkWriter
from readmodel.projections import IndexDocument, ProductsProjection
from tests.integration.faults import (
    READ_MODELS,
    Progress,
    WorkerProcess,
    Workload,
    eventually,
    owner_pid,
    progress,
    read_model_mismatches,
    worker_env,
)
from tools import search_node
from writemodel import outbox
from writemodel.access import SYSTEM
from writemodel.tables import products, stock

pytestmark = pytest.mark.elasticsearch

# Several workers sharing a feed is the past-one-machine setup: PostgreSQL only.
POSTGRES_ONLY = pytest.mark.parametrize(
    "database_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)

LEASE_SECONDS = 2.0


async def _caught_up(app: Bicameral) -> Progress | None:
    now = await progress(app.engine)
    return None if now.behind else now


# --- 1. SIGKILL between the bulk call and the checkpoint ---


@dataclass(frozen=True)
class Kill:
    # Events between each checkpoint and the head at the moment of the kill.
    lag: dict[str, int]
    # Documents already written past each checkpoint the dead worker left: a bulk
    # that went through and a checkpoint that never followed.
    ahead: dict[str, int]

    @property
    def mid_batch(self) -> bool:
        return any(self.ahead.values())


async def _wait_until_busy(app: Bicameral, worker: WorkerProcess) -> None:
    """Until `worker` holds a lease and has applied a batch with it."""
    start = await progress(app.engine)

    async def probe() -> Progress | None:
        if worker.exited():
            raise AssertionError(f"bicameral worker exited:\n{worker.tail()}")
        now = await progress(app.engine)
        moved = [
            name
            for name, cp in now.checkpoints.items()
            if owner_pid(cp.owner) == worker.pid and cp.position > start.checkpoints[name].position
        ]
        return now if moved else None

    await eventually(
        probe,
        timeout=30,
        what=f"worker {worker.pid} to take a lease and apply a batch",
        explain=worker.tail,
    )


async def _writes(app: Bicameral, name: str) -> list[tuple[int, int]]:
    """(`_seq_no`, position) of every document in a read model's index, refreshed."""
    alias = f"{app.settings.index_prefix}-{name}"
    await app.search.indices.refresh(index=alias)
    found = await app.search.search(
        index=alias, size=10_000, seq_no_primary_term=True, source_includes=["position"]
    )
    return [(h["_seq_no"], h["_source"]["position"]) for h in found["hits"]["hits"]]


async def _last_writes(app: Bicameral) -> dict[str, int]:
    """Per read model, the sequence number of the newest write to its index."""
    return {
        name: max((seq for seq, _ in await _writes(app, name)), default=-1) for name in READ_MODELS
    }


async def _documents_ahead(
    app: Bicameral, before: dict[str, int], dead: Progress
) -> dict[str, int]:
    """Per read model: documents written since `before` and past the checkpoint the
    dead worker left, which only a batch in flight at the kill can have written."""
    return {
        name: sum(
            1
            for seq, position in await _writes(app, name)
            if seq > before[name] and position > dead.checkpoints[name].position
        )
        for name in READ_MODELS
    }


async def test_workers_killed_between_bulk_and_checkpoint_leave_every_read_model_right(
    app: Bicameral, tmp_path: Path
) -> None:
    env = worker_env(app.settings, tmp_path, FEED_LEASE_SECONDS=str(LEASE_SECONDS))
    rng = random.Random(20240611)
    workload = Workload(app.commands, seed=1)
    done = asyncio.Event()
    writing = asyncio.create_task(workload.run(done, max_commands=350, pause=0.03))
    workers: list[WorkerProcess] = []
    kills: list[Kill] = []
    try:
        # At least 5 kills; more (up to 8) until one provably landed between a bulk
        # call and its checkpoint.
        for n in range(8):
            # A new process: it waits out the dead one's lease before it can start.
            before = await _last_writes(app)
            worker = WorkerProcess(env, tmp_path / f"worker-{n}.log")
            workers.append(worker)
            await _wait_until_busy(app, worker)
            await asyncio.sleep(rng.uniform(0.0, 0.25))
            at_kill = await progress(app.engine)
            worker.kill()
            dead = await progress(app.engine)
            ahead = await _documents_ahead(app, before, dead)
            kills.append(Kill({name: at_kill.lag(name) for name in READ_MODELS}, ahead))
            if len(kills) >= 5 and any(k.mid_batch for k in kills):
                break
        done.set()
        await writing

        # The faults are over; larger batches only make the catch-up quicker.
        last = WorkerProcess({**env, "FEED_BATCH_SIZE": "200"}, tmp_path / "worker-last.log")
        workers.append(last)
        await eventually(
            lambda: _caught_up(app),
            timeout=90,
            what="the last worker to catch up",
            explain=last.tail,
        )
        last.close()
        problems = await read_model_mismatches(app.engine, app.search, app.settings.index_prefix)
    finally:
        done.set()
        for worker in workers:
            worker.close()
        if not writing.done():
            writing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writing

    for kill in kills:
        print(f"kill: lag at kill {kill.lag}, documents past the checkpoint {kill.ahead}")
    print(f"{workload.executed} commands written, {workload.refused} refused")
    assert problems == []
    assert workload.executed >= 150
    assert len(kills) >= 5
    assert any(sum(k.lag.values()) > 0 for k in kills), "no kill landed while behind the head"
    assert any(k.mid_batch for k in kills), "no kill landed between a bulk and its checkpoint"


# --- 3. Two workers, and the lease owner dies ---


@POSTGRES_ONLY
async def test_when_the_lease_owner_is_killed_the_other_worker_takes_over_and_loses_nothing(
    app: Bicameral, tmp_path: Path
) -> None:
    env = worker_env(app.settings, tmp_path, FEED_LEASE_SECONDS=str(LEASE_SECONDS))
    workload = Workload(app.commands, seed=2)
    done = asyncio.Event()
    writing = asyncio.create_task(workload.run(done, max_commands=600, pause=0.03))
    workers = [WorkerProcess(env, tmp_path / f"worker-{n}.log") for n in (1, 2)]
    by_pid = {w.pid: w for w in workers}

    def tails() -> str:
        return "\n".join(w.tail() for w in workers)

    try:

        async def all_held() -> Progress | None:
            if any(w.exited() for w in workers):
                raise AssertionError(f"a worker exited:\n{tails()}")
            now = await progress(app.engine)
            return (
                now
                if now.owners() <= by_pid.keys() and now.checkpoints["orders"].position
                else None
            )

        await eventually(
            all_held, timeout=30, what="the workers to hold every lease", explain=tails
        )
        await asyncio.sleep(1.0)  # mid-stream: writes keep coming and batches keep going

        held = await progress(app.engine)
        owner_of_most = Counter(owner_pid(cp.owner) or 0 for cp in held.rows)
        doomed = by_pid[owner_of_most.most_common(1)[0][0]]
        (survivor,) = (w for w in workers if w is not doomed)
        at_kill = await progress(app.engine)
        doomed.kill()
        killed = time.monotonic()
        left = await progress(app.engine)
        lease_ends = max(
            cp.lease_until
            for cp in left.rows
            if owner_pid(cp.owner) == doomed.pid and cp.lease_until is not None
        )

        async def taken_over() -> Progress | None:
            now = await progress(app.engine)
            return now if now.owners() == {survivor.pid} else None

        await eventually(
            taken_over, timeout=30, interval=0.02, what="the survivor to take over", explain=tails
        )
        takeover = time.monotonic() - killed
        taken_at = datetime.now(UTC)

        await asyncio.sleep(1.0)  # the survivor carries on under writes
        done.set()
        await writing
        await eventually(
            lambda: _caught_up(app), timeout=60, what="the survivor to catch up", explain=tails
        )
        survivor.close()
        problems = await read_model_mismatches(app.engine, app.search, app.settings.index_prefix)
    finally:
        done.set()
        for worker in workers:
            worker.close()
        if not writing.done():
            writing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writing

    print(
        f"took over {takeover:.2f} s after the kill, "
        f"{(taken_at - lease_ends).total_seconds():.2f} s after the lease ran out "
        "(negative: before it, by the advisory locks); "
        f"{workload.executed} commands written; "
        f"lag at the kill { {name: at_kill.lag(name) for name in READ_MODELS} }"
    )
    # How soon a survivor takes over is what FEED_LEASE_SECONDS promises at the latest,
    # so this test times it after all: the lease, plus the survivor's poll and a margin
    # for a loaded 2-core box. On PostgreSQL the dead worker's advisory locks end with
    # its connection, so its partitions may (and usually do) move before its lease ran
    # out (readmodel/partitions.py; tests/integration/test_partitions.py).
    assert takeover <= LEASE_SECONDS + 2.0
    # Doubled documents would show as more documents than rows, or as wrong versions.
    assert problems == []


# --- 4. A delete reaches the index ---


@dataclass(frozen=True)
class ProductPurged(Event):
    """Test-only: a hard delete of a product, which the domain never emits."""

    aggregate_type = "Product"


async def test_a_deleted_row_leaves_the_index_and_an_older_write_cannot_bring_it_back(
    app: Bicameral,
) -> None:
    doomed = (
        await app.commands.execute(
            c.CreateProduct(sku="GONE-1", name="Gone", price=900, currency="EUR", initial_stock=2),
            actor=SYSTEM,
        )
    ).snapshot["id"]
    kept = (
        await app.commands.execute(
            c.CreateProduct(sku="KEPT-1", name="Kept", price=700, currency="EUR"), actor=SYSTEM
        )
    ).snapshot["id"]
    await app.commands.execute(c.ChangePrice(doomed, 1500), actor=SYSTEM)
    await app.worker.run_until_caught_up()
    alias = f"{app.settings.index_prefix}-products"
    assert await app.search.exists(index=alias, id=doomed)
    async with app.engine.connect() as conn:
        history = await outbox.read_after(conn, 0, 100)
        # What a worker that read these events before the delete would still write.
        (stale,) = await ProductsProjection().project(
            conn, [e for e in history if e.aggregate_id == doomed]
        )
    assert isinstance(stale, IndexDocument)

    # The row goes and its event is appended, in one transaction, as a command would.
    async with app.engine.begin() as conn:
        version = (
            await conn.execute(select(products.c.version).where(products.c.id == doomed))
        ).scalar_one()
        await conn.execute(delete(stock).where(stock.c.product_id == doomed))
        await conn.execute(delete(products).where(products.c.id == doomed))
        purged = await outbox.append(
            conn,
            [(version + 1, ProductPurged(doomed))],
            correlation_id="test-purge",
            now=datetime.now(UTC),
            actor=SYSTEM,
        )
    await app.worker.run_until_caught_up()

    assert not await app.search.exists(index=alias, id=doomed)
    assert await app.search.exists(index=alias, id=kept)

    # A late duplicate of the write from before the delete: its older version loses to
    # the delete's tombstone. Elasticsearch keeps a tombstone for `index.gc_deletes`
    # (60 s by default); a write computed before the delete and arriving later than
    # that would bring the document back. Replays never do (below): a projection
    # builds from the rows as they are now, so a replay of the row's events deletes.
    assert purged is not None and stale.version < purged
    await BulkWriter(app.search).write(alias, [stale])
    assert not await app.search.exists(index=alias, id=doomed)
    with pytest.raises(ConflictError):
        await app.search.index(
            index=alias,
            id=doomed,
            document=stale.document,
            version=stale.version,
            version_type="external",
        )

    for projection in app.worker.projections:
        await app.checkpoints.reset(projection.name, 0, datetime.now(UTC))
    await app.worker.run_until_caught_up()

    assert not await app.search.exists(index=alias, id=doomed)
    assert await read_model_mismatches(app.engine, app.search, app.settings.index_prefix) == []


# --- 2. Elasticsearch stopped for 30 s under writes (the slow one) ---


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@POSTGRES_ONLY
async def test_slow_the_worker_recovers_by_itself_after_elasticsearch_was_down_for_30_s(
    settings: Settings,
    engine: AsyncEngine,  # the fresh database, migrated
    tmp_path: Path,
) -> None:
    """SLOW (70-170 s): its own node, started twice, and down for 30 s of writes."""
    port, data_dir = _free_port(), tmp_path / "search"
    # Where the node keeps its files (under /var/lib/bicameral when root runs the
    # suite from a folder the node's user cannot enter): removed at the end.
    folder = Path(search_node.status(port, data_dir)["folder"])
    app: Bicameral | None = None
    workload: Workload | None = None
    done = asyncio.Event()
    writing: asyncio.Task[None] | None = None
    try:
        url = await asyncio.to_thread(search_node.start, port=port, data_dir=data_dir)
        app = build(
            replace(
                settings,
                elasticsearch_url=url,
                embedded_worker=True,
                feed_batch_size=100,
                feed_poll_interval=0.1,
            )
        )
        await app.start(subscriptions=False)
        workload = Workload(app.commands, seed=3)
        writing = asyncio.create_task(workload.run(done, max_commands=2000, pause=0.1))
        running, written = app, workload

        async def first_writes_indexed() -> Progress | None:
            now = await progress(running.engine)
            moving = written.executed >= 30 and all(
                cp.position > 0 for cp in now.checkpoints.values()
            )
            return now if moving else None

        await eventually(first_writes_indexed, timeout=60, what="the first writes to be indexed")
        before = workload.attempted

        await asyncio.to_thread(search_node.stop, port, data_dir)
        await asyncio.sleep(30)
        down = {lag.name: lag for lag in await app.lag()}
        during = workload.attempted - before
        restarting = time.monotonic()
        await asyncio.to_thread(search_node.start, port=port, data_dir=data_dir)
        back = time.monotonic()
        restart_seconds = back - restarting

        async def recovered() -> bool | None:
            lags = await running.lag()
            return True if all(lag.lag_events == 0 for lag in lags) else None

        # Keep writing a little after the node is back, then stop and wait it out.
        await asyncio.sleep(3)
        done.set()
        await writing
        await eventually(recovered, timeout=120, what="lag to return to zero")
        recovery = time.monotonic() - back
        after = {lag.name: lag for lag in await app.lag()}
        problems = await read_model_mismatches(app.engine, app.search, settings.index_prefix)
        found = await app.search.search(
            index=f"{settings.index_prefix}-products", size=1000, query={"match_all": {}}
        )
        prices = {h["_id"]: h["_source"]["price"] for h in found["hits"]["hits"]}
    finally:
        done.set()
        if writing is not None and not writing.done():
            writing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writing
        if app is not None:
            await app.stop()
        await asyncio.to_thread(search_node.stop, port, data_dir)
        shutil.rmtree(folder, ignore_errors=True)
        if folder.parent != data_dir:
            with contextlib.suppress(OSError):
                folder.parent.rmdir()  # /var/lib/bicameral/nodes/<digest>, if now empty

    print(
        f"{during} commands while the node was down; restart took {restart_seconds:.1f} s; "
        f"lag back to zero {recovery:.1f} s after the node answered; "
        f"lag at the end of the outage: { {n: lag.lag_events for n, lag in down.items()} }"
    )
    assert during >= 100, "the outage saw too few writes to prove anything"
    assert any(lag.lag_events > 0 for lag in down.values()), "the checkpoints moved with no node"
    # Recovered by itself: the same worker still owns every read model.
    assert {lag.owner for lag in after.values()} == {app.worker.owner}
    assert workload is not None and prices == workload.prices
    assert problems == []
