"""The outbox contract, run against both write databases (SQLite and PostgreSQL).

What the feed relies on: events get growing positions, commit with the state
they describe or not at all, and a reader asking for `position > last` never
gets past an event that is still to commit (gap safety, DESIGN.md rule 2).
"""

from __future__ import annotations

import asyncio
import itertools
import random
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy
from sqlalchemy import Table, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.errors import AlreadyExists
from domain.events import Event, ProductCreated, StockReceived
from domain.product import Product
from domain.stock import Stock
from writemodel import outbox
from writemodel.access import SYSTEM
from writemodel.database import create_engine, is_postgres, read_only
from writemodel.migrate import migrate
from writemodel.outbox import StoredEvent
from writemodel.sql_unit_of_work import SqlUnitOfWork
from writemodel.tables import events, products, stock

NOW = datetime(2030, 5, 17, 9, 30, 15, 123456, tzinfo=UTC)
# Every wait in these tests is bounded: a hang fails the test instead of the suite.
STEP_TIMEOUT = 20.0


def _received(quantity: int = 1) -> tuple[int, Event]:
    """A real domain event on an aggregate of its own (version 1 of a fresh stock)."""
    return 1, StockReceived(str(uuid.uuid4()), quantity=quantity, on_hand=quantity)


async def _read(engine: AsyncEngine, after: int, limit: int = 1000) -> list[StoredEvent]:
    """One read in a short read-only transaction, as the feed worker does it."""
    async with read_only(engine) as conn:
        return await outbox.read_after(conn, after, limit)


async def _head(engine: AsyncEngine) -> tuple[int, datetime | None]:
    async with read_only(engine) as conn:
        return await outbox.head(conn)


async def _count(engine: AsyncEngine, table: Table) -> int:
    async with read_only(engine) as conn:
        return int(await conn.scalar(select(func.count()).select_from(table)) or 0)


async def _append_and_commit(
    engine: AsyncEngine, recorded: Sequence[tuple[int, Event]], correlation_id: str
) -> int:
    async with engine.connect() as conn:
        await conn.begin()
        position = await outbox.append(
            conn, recorded, correlation_id=correlation_id, now=NOW, actor=SYSTEM
        )
        await conn.commit()
    assert position is not None
    return position


class Reader:
    """A feed reader in miniature: remembers its last position, records what it got."""

    def __init__(self, engine: AsyncEngine, after: int = 0, batch: int = 500) -> None:
        self.engine = engine
        self.last = after
        self.batch = batch
        self.delivered: list[StoredEvent] = []

    async def poll(self) -> list[StoredEvent]:
        got = await _read(self.engine, self.last, self.batch)
        if got:
            self.last = got[-1].position
            self.delivered.extend(got)
        return got

    async def drain(self) -> list[StoredEvent]:
        got: list[StoredEvent] = []
        while batch := await self.poll():
            got.extend(batch)
        return got


async def _until_blocked_or_done(engine: AsyncEngine, task: asyncio.Task[int]) -> None:
    """Give the second writer the chance to commit past the first.

    On PostgreSQL it does not wait for the first (writers commit in parallel):
    it finishes, and the reader's check below is what shows the first still
    holds it back. On SQLite it waits for the write lock inside the driver's
    thread, where we cannot look, so we give it time to finish if it could.
    Either way, the reader must not get past the first writer's event."""
    timeout = STEP_TIMEOUT if is_postgres(engine) else 0.3
    await asyncio.wait({task}, timeout=timeout)


@pytest.fixture
async def pg_engine(fresh_postgres_database: str) -> AsyncIterator[AsyncEngine]:
    """A migrated PostgreSQL write database, for what only PostgreSQL can show."""
    engine = create_engine(fresh_postgres_database)
    await migrate(engine)
    yield engine
    await engine.dispose()


class TestOutboxContract:
    async def test_an_empty_outbox_has_head_zero_and_nothing_to_read(
        self, engine: AsyncEngine
    ) -> None:
        assert await _head(engine) == (0, None)
        assert await _read(engine, 0) == []

    async def test_appended_events_get_growing_positions_and_carry_everything_the_feed_needs(
        self, engine: AsyncEngine
    ) -> None:
        product_id = str(uuid.uuid4())
        created = ProductCreated(
            product_id,
            sku="MUG-1",
            name="Mug",
            description="A mug",
            category="kitchen",
            tags=["blue", "tea"],
            price=1250,
            currency="EUR",
            status="active",
        )
        received = StockReceived(product_id, quantity=7, on_hand=7)
        received_again = StockReceived(product_id, quantity=3, on_hand=10)

        last = await _append_and_commit(
            engine, [(1, created), (1, received), (2, received_again)], "corr-1"
        )
        later = await _append_and_commit(engine, [_received()], "corr-2")

        stored = await _read(engine, 0)
        positions = [e.position for e in stored]
        assert positions == sorted(set(positions))
        assert positions[2] == last
        assert positions[3] == later > last
        first = stored[0]
        assert (
            first.aggregate_type,
            first.aggregate_id,
            first.aggregate_version,
            first.event_type,
            first.correlation_id,
        ) == ("Product", product_id, 1, "ProductCreated", "corr-1")
        assert first.payload == created.payload()
        assert first.payload["tags"] == ["blue", "tea"]
        assert [
            (e.aggregate_type, e.aggregate_id, e.aggregate_version, e.event_type)
            for e in stored[1:3]
        ] == [
            ("Stock", product_id, 1, "StockReceived"),
            ("Stock", product_id, 2, "StockReceived"),
        ]
        assert stored[2].payload == {"quantity": 3, "on_hand": 10}
        for event in stored:
            assert event.occurred_at == NOW
            assert event.occurred_at.utcoffset() == timedelta(0)
        assert [e.correlation_id for e in stored] == ["corr-1"] * 3 + ["corr-2"]

    async def test_a_transactions_events_go_in_one_insert_in_the_order_they_were_recorded(
        self, engine: AsyncEngine
    ) -> None:
        # Aggregates in random id order, each with its versions in turn: the recorded
        # order is neither the ids' nor the versions' nor the quantities'.
        rng = random.Random(7)
        ids = [str(uuid.uuid4()) for _ in range(10)]
        recorded: list[tuple[int, Event]] = []
        for version in range(1, 6):
            for id in rng.sample(ids, len(ids)):
                quantity = rng.randint(1, 99)
                recorded.append((version, StockReceived(id, quantity=quantity, on_hand=quantity)))
        statements: list[str] = []

        def _record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            statements.append(statement)

        sqlalchemy.event.listen(engine.sync_engine, "before_cursor_execute", _record)
        try:
            last = await _append_and_commit(engine, recorded, "batch")
        finally:
            sqlalchemy.event.remove(engine.sync_engine, "before_cursor_execute", _record)

        stored = await _read(engine, 0)
        assert [(e.aggregate_id, e.aggregate_version, e.payload) for e in stored] == [
            (e.aggregate_id, version, e.payload()) for version, e in recorded
        ]
        assert last == stored[-1].position
        assert len([s for s in statements if s.lstrip().startswith("INSERT INTO events")]) == 1

    async def test_an_events_time_is_the_instant_it_was_given_in_any_zone(
        self, engine: AsyncEngine
    ) -> None:
        in_paris = datetime(2030, 5, 17, 11, 30, tzinfo=timezone(timedelta(hours=2)))

        await _append_and_commit(engine, [_received()], "corr")

        async with engine.connect() as conn:
            await conn.begin()
            await outbox.append(
                conn, [_received()], correlation_id="zoned", now=in_paris, actor=SYSTEM
            )
            await conn.commit()
        (stored,) = [e for e in await _read(engine, 0) if e.correlation_id == "zoned"]
        assert stored.occurred_at == datetime(2030, 5, 17, 9, 30, tzinfo=UTC)

    async def test_read_after_honours_the_position_and_the_limit(self, engine: AsyncEngine) -> None:
        positions = [await _append_and_commit(engine, [_received()], f"c{i}") for i in range(6)]

        assert [e.position for e in await _read(engine, 0, 2)] == positions[:2]
        assert [e.position for e in await _read(engine, positions[1], 3)] == positions[2:5]
        assert [e.position for e in await _read(engine, positions[3], 100)] == positions[4:]
        assert await _read(engine, positions[-1], 100) == []
        assert [e.position for e in await _read(engine, positions[2] - 1, 1)] == [positions[2]]

    async def test_on_a_quiet_outbox_the_settled_position_is_the_head(
        self, engine: AsyncEngine
    ) -> None:
        async with read_only(engine) as conn:
            assert await outbox.settled(conn) == 0
        await _append_and_commit(engine, [_received()], "c1")
        newest = await _append_and_commit(engine, [_received(), _received()], "c2")

        async with read_only(engine) as conn:
            assert await outbox.settled(conn) == newest

    async def test_head_is_the_newest_position_and_its_time(self, engine: AsyncEngine) -> None:
        await _append_and_commit(engine, [_received(), _received()], "c1")
        newest = await _append_and_commit(engine, [_received()], "c2")

        assert await _head(engine) == (newest, NOW)

    async def test_an_aggregate_version_is_recorded_once(self, engine: AsyncEngine) -> None:
        version, event = _received()
        await _append_and_commit(engine, [(version, event)], "first")

        with pytest.raises(IntegrityError):
            await _append_and_commit(engine, [_received(), (version, event)], "again")

        assert [e.correlation_id for e in await _read(engine, 0)] == ["first"]

    async def test_appending_nothing_writes_nothing_and_returns_none(
        self, engine: AsyncEngine
    ) -> None:
        async with engine.connect() as conn:
            await conn.begin()
            assert (
                await outbox.append(conn, [], correlation_id="none", now=NOW, actor=SYSTEM) is None
            )
            await conn.commit()

        assert await _head(engine) == (0, None)

    # --- state and events commit together ---

    async def test_a_unit_of_work_commits_the_state_and_its_events_together(
        self, engine: AsyncEngine
    ) -> None:
        async with SqlUnitOfWork(engine) as uow:
            product = _product("MUG-1")
            uow.products.add(product)
            uow.stocks.add(Stock(product.id))
            position = await uow.commit(correlation_id="ok", now=NOW, actor=SYSTEM)

        stored = await _read(engine, 0)
        assert [(e.event_type, e.aggregate_id, e.position) for e in stored] == [
            ("ProductCreated", product.id, position)
        ]
        assert await _count(engine, products) == 1
        assert await _count(engine, stock) == 1

    async def test_a_unit_of_work_that_fails_at_commit_leaves_no_state_and_no_event(
        self, engine: AsyncEngine
    ) -> None:
        async with SqlUnitOfWork(engine) as uow:
            # Two new products with one sku: the handler would refuse the second, so
            # only the database's unique constraint stands between them and the table.
            for product in (_product("MUG-1"), _product("MUG-1")):
                uow.products.add(product)
                uow.stocks.add(Stock(product.id))
            with pytest.raises(AlreadyExists) as refused:
                await uow.commit(correlation_id="dup", now=NOW, actor=SYSTEM)

        assert refused.value.code == "SKU_TAKEN"
        assert await _count(engine, products) == 0
        assert await _count(engine, stock) == 0
        assert await _count(engine, events) == 0
        assert await _head(engine) == (0, None)

    async def test_an_error_inside_a_unit_of_work_before_commit_leaves_nothing(
        self, engine: AsyncEngine
    ) -> None:
        with pytest.raises(RuntimeError, match="handler blew up"):
            async with SqlUnitOfWork(engine) as uow:
                product = _product("MUG-1")
                uow.products.add(product)
                uow.stocks.add(Stock(product.id))
                raise RuntimeError("handler blew up")

        assert await _count(engine, products) == 0
        assert await _count(engine, stock) == 0
        assert await _count(engine, events) == 0

    async def test_the_database_is_usable_after_a_failed_unit_of_work(
        self, engine: AsyncEngine
    ) -> None:
        async with SqlUnitOfWork(engine) as uow:
            uow.products.add(_product("MUG-1"))
            uow.products.add(_product("MUG-1"))
            with pytest.raises(AlreadyExists):
                await uow.commit(correlation_id="dup", now=NOW, actor=SYSTEM)
        async with SqlUnitOfWork(engine) as uow:
            uow.products.add(_product("MUG-1"))
            position = await uow.commit(correlation_id="ok", now=NOW, actor=SYSTEM)

        assert [(e.position, e.correlation_id) for e in await _read(engine, 0)] == [
            (position, "ok")
        ]

    # --- gap safety ---

    async def test_a_reader_never_passes_an_event_whose_transaction_is_still_open(
        self, engine: AsyncEngine
    ) -> None:
        reader = Reader(engine)
        await _append_and_commit(engine, [_received()], "before")
        assert [e.correlation_id for e in await reader.drain()] == ["before"]

        b_starting = asyncio.Event()

        async def writer_b() -> int:
            async with engine.connect() as conn:
                b_starting.set()
                await conn.begin()
                position = await outbox.append(
                    conn, [_received()], correlation_id="b", now=NOW, actor=SYSTEM
                )
                assert position is not None
                await conn.commit()
                return position

        a = await engine.connect()
        b: asyncio.Task[int] | None = None
        try:
            await a.begin()
            a_position = await outbox.append(
                a, [_received()], correlation_id="a", now=NOW, actor=SYSTEM
            )
            assert a_position is not None

            b = asyncio.create_task(writer_b())
            await asyncio.wait_for(b_starting.wait(), STEP_TIMEOUT)
            await _until_blocked_or_done(engine, b)

            # A holds: whatever B did meanwhile, the reader must not get past A.
            for _ in range(5):
                got = await reader.poll()
                assert [e.correlation_id for e in got] == [], (
                    "the reader went past an event still to commit"
                )
                await asyncio.sleep(0.01)

            await a.commit()
        finally:
            await a.close()
            if b is not None:
                b_position = await asyncio.wait_for(b, STEP_TIMEOUT)

        after_both = await reader.drain()
        assert [(e.correlation_id, e.position) for e in after_both] == [
            ("a", a_position),
            ("b", b_position),
        ]
        assert a_position < b_position
        assert await reader.drain() == []
        delivered = [e.position for e in reader.delivered]
        assert len(delivered) == len(set(delivered)) == 3

    async def test_concurrent_writers_are_read_in_order_each_event_exactly_once(
        self, engine: AsyncEngine
    ) -> None:
        writers, total = 16, 10_000
        rng = random.Random(20300517)
        sizes: list[int] = []
        while sum(sizes) < total:
            sizes.append(min(rng.randint(1, 8), total - sum(sizes)))
        work: asyncio.Queue[int] = asyncio.Queue()
        for size in sizes:
            work.put_nowait(size)
        # correlation id -> (events in the transaction, last position append returned)
        committed: dict[str, tuple[int, int]] = {}
        appended_ids: set[str] = set()
        writers_done = asyncio.Event()

        async def writer(n: int) -> None:
            delays = random.Random(n)
            while not work.empty():
                size = work.get_nowait()
                recorded = [_received() for _ in range(size)]
                correlation_id = uuid.uuid4().hex
                # A connection per transaction: SQLite's pool has 15, and the reader needs one.
                async with engine.connect() as conn:
                    await conn.begin()
                    last = await outbox.append(
                        conn, recorded, correlation_id=correlation_id, now=NOW, actor=SYSTEM
                    )
                    await asyncio.sleep(delays.uniform(0, 0.002))
                    await conn.commit()
                assert last is not None
                committed[correlation_id] = (size, last)
                appended_ids.update(e.aggregate_id for _, e in recorded)

        reader = Reader(engine, batch=500)
        read_while_writing = 0

        async def read_until_drained() -> None:
            nonlocal read_while_writing
            while True:
                done = writers_done.is_set()
                got = await reader.poll()
                if not done:
                    read_while_writing += len(got)
                if not got:
                    if done:
                        return
                    await asyncio.sleep(0.005)

        reading = asyncio.create_task(read_until_drained())
        try:
            async with asyncio.timeout(120):
                await asyncio.gather(*(writer(n) for n in range(writers)))
                writers_done.set()
                await reading
        finally:
            reading.cancel()

        # The premise: the reader really did read while the writers were writing.
        assert read_while_writing > 0
        delivered = [e.position for e in reader.delivered]
        assert len(delivered) == total
        assert all(a < b for a, b in itertools.pairwise(delivered))
        async with engine.connect() as conn:
            in_table = set((await conn.scalars(select(events.c.position))).all())
        assert set(delivered) == in_table
        assert {e.aggregate_id for e in reader.delivered} == appended_ids
        per_transaction: dict[str, list[int]] = {}
        for event in reader.delivered:
            per_transaction.setdefault(event.correlation_id, []).append(event.position)
        assert {cid: (len(ps), ps[-1]) for cid, ps in per_transaction.items()} == committed

    async def test_an_aborted_transaction_does_not_stall_the_reader(
        self, engine: AsyncEngine
    ) -> None:
        reader = Reader(engine)
        b_starting = asyncio.Event()

        async def writer_b() -> int:
            b_starting.set()
            return await _append_and_commit(engine, [_received()], "b")

        a = await engine.connect()
        b: asyncio.Task[int] | None = None
        try:
            await a.begin()
            assert await outbox.append(a, [_received()], correlation_id="a", now=NOW, actor=SYSTEM)
            b = asyncio.create_task(writer_b())
            await asyncio.wait_for(b_starting.wait(), STEP_TIMEOUT)
            await _until_blocked_or_done(engine, b)
            assert await reader.poll() == []
            await a.rollback()
        finally:
            await a.close()
            if b is not None:
                b_position = await asyncio.wait_for(b, STEP_TIMEOUT)

        assert [(e.correlation_id, e.position) for e in await reader.drain()] == [("b", b_position)]
        later = [await _append_and_commit(engine, [_received()], f"c{i}") for i in range(3)]
        assert [(e.correlation_id, e.position) for e in await reader.drain()] == [
            ("c0", later[0]),
            ("c1", later[1]),
            ("c2", later[2]),
        ]
        assert "a" not in {e.correlation_id for e in reader.delivered}


@pytest.mark.postgres
async def test_on_postgresql_a_second_appender_commits_while_the_first_is_still_open(
    pg_engine: AsyncEngine,
) -> None:
    a = await pg_engine.connect()
    try:
        await a.begin()
        a_position = await outbox.append(
            a, [_received()], correlation_id="a", now=NOW, actor=SYSTEM
        )
        assert a_position is not None
        # No lock to queue behind: B commits while A is open.
        b_position = await asyncio.wait_for(
            _append_and_commit(pg_engine, [_received()], "b"), STEP_TIMEOUT
        )
        assert b_position > a_position
        assert await _head(pg_engine) == (b_position, NOW)
        # The reader holds below A's position, though B's is committed.
        assert await _read(pg_engine, 0) == []
        async with read_only(pg_engine) as conn:
            assert await outbox.horizon(conn) < a_position
            assert await outbox.settled(conn) < a_position
        await a.commit()
    finally:
        await a.close()

    assert [e.correlation_id for e in await _read(pg_engine, 0)] == ["a", "b"]


@pytest.mark.postgres
async def test_on_postgresql_64_writers_with_transactions_held_open_for_seconds_skip_nothing(
    pg_engine: AsyncEngine,
) -> None:
    """Writers keep committing around transactions held open for 1-2 s; the
    reader waits below each held one, then catches up: every event once, in order."""
    writers, per_writer = 64, 40
    held_every = 10  # every tenth transaction of a writer is held open
    rng = random.Random(64)
    committed: dict[str, tuple[int, int]] = {}
    # For each held transaction: its position, and the commits others made meanwhile.
    held: list[tuple[int, int]] = []
    commits = 0
    writers_done = asyncio.Event()

    wide: AsyncEngine

    async def writer(n: int) -> None:
        nonlocal commits
        delays = random.Random(n)
        for i in range(per_writer):
            size = rng.randint(1, 4)
            correlation_id = uuid.uuid4().hex
            async with wide.connect() as conn:
                await conn.begin()
                last = await outbox.append(
                    conn,
                    [_received() for _ in range(size)],
                    correlation_id=correlation_id,
                    now=NOW,
                    actor=SYSTEM,
                )
                assert last is not None
                if (i + n) % held_every == 0:
                    before = commits
                    await asyncio.sleep(delays.uniform(1.0, 2.0))
                    held.append((last, commits - before))
                else:
                    await asyncio.sleep(delays.uniform(0, 0.005))
                await conn.commit()
            commits += 1
            committed[correlation_id] = (size, last)

    reader = Reader(pg_engine, batch=200)
    # Polls that found a committed event above where the reader could go: it waited.
    held_back = 0

    async def read_until_drained() -> None:
        nonlocal held_back
        while True:
            done = writers_done.is_set()
            got = await reader.poll()
            if not got:
                if done:
                    return
                head, _ = await _head(pg_engine)
                if head > reader.last:
                    held_back += 1
                await asyncio.sleep(0.01)

    # The writers' own engine, with a connection for each of them.
    wide = create_engine(pg_engine.url.render_as_string(hide_password=False), pool_size=writers)
    try:
        reading = asyncio.create_task(read_until_drained())
        try:
            async with asyncio.timeout(180):
                await asyncio.gather(*(writer(n) for n in range(writers)))
                writers_done.set()
                await reading
        finally:
            reading.cancel()
    finally:
        await wide.dispose()

    # The premises: writers committed while others were held open, and the
    # reader really was held back below a held transaction.
    assert held and max(meanwhile for _, meanwhile in held) > 0
    assert held_back > 0
    delivered = [e.position for e in reader.delivered]
    assert all(a < b for a, b in itertools.pairwise(delivered))
    async with pg_engine.connect() as conn:
        in_table = set((await conn.scalars(select(events.c.position))).all())
    assert len(delivered) == len(in_table) == sum(size for size, _ in committed.values())
    assert set(delivered) == in_table
    per_transaction: dict[str, list[int]] = {}
    for event in reader.delivered:
        per_transaction.setdefault(event.correlation_id, []).append(event.position)
    assert {cid: (len(ps), ps[-1]) for cid, ps in per_transaction.items()} == committed


def _product(sku: str) -> Product:
    return Product.create(
        str(uuid.uuid4()), sku=sku, name="Mug", price=1000, currency="EUR", now=NOW
    )
