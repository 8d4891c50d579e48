"""The unit of work's contract, run on every adapter: the fake the unit tests use,
and SqlUnitOfWork on SQLite and on PostgreSQL.

Each scenario goes through the port only (repositories, commit, rollback,
recall); an adapter's harness says how to start a unit of work, how to read
the outbox back, and how another writer moves a row on. A scenario that
passes on the fake and fails on a database (or the other way round) is a
fake that lies to the handlers' unit tests, or an adapter that breaks the port.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.aggregate import Aggregate
from domain.customer import Customer
from domain.errors import AlreadyExists, ConcurrencyConflict
from domain.order import Order, OrderLine
from domain.product import Product
from domain.stock import Stock
from tests.conftest import DATABASES
from tests.unit.fakes import FakeStore, FakeUnitOfWork
from writemodel import outbox
from writemodel.access import Actor
from writemodel.database import create_engine
from writemodel.migrate import migrate
from writemodel.outbox import StoredEvent
from writemodel.sql_unit_of_work import SqlUnitOfWork
from writemodel.unit_of_work import IdempotencyRace, Remember, UnitOfWork

NOW = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)
CLERK = Actor("staff", subject="clerk-7")


class Harness(ABC):
    """What a scenario needs of an adapter beyond the port."""

    @abstractmethod
    def unit_of_work(self) -> UnitOfWork: ...

    @abstractmethod
    async def events_after(self, position: int) -> list[StoredEvent]: ...

    @abstractmethod
    async def another_writer_changes(self, uow: UnitOfWork, product_id: str) -> None:
        """Another writer commits a newer version of the product `uow` has loaded."""


class FakeHarness(Harness):
    def __init__(self) -> None:
        self.store = FakeStore()

    def unit_of_work(self) -> UnitOfWork:
        return FakeUnitOfWork(self.store)

    async def events_after(self, position: int) -> list[StoredEvent]:
        return [event for event in self.store.outbox if event.position > position]

    async def another_writer_changes(self, uow: UnitOfWork, product_id: str) -> None:
        self.store.products[product_id].version += 1


class SqlHarness(Harness):
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    def unit_of_work(self) -> UnitOfWork:
        return SqlUnitOfWork(self.engine)

    async def events_after(self, position: int) -> list[StoredEvent]:
        async with self.engine.connect() as conn:
            return await outbox.read_after(conn, position, 1000)

    async def another_writer_changes(self, uow: UnitOfWork, product_id: str) -> None:
        bump = text("UPDATE products SET version = version + 1 WHERE id = :id")
        if self.engine.dialect.name == "sqlite":
            # SQLite's single writer (the unit of work holds the write lock from BEGIN
            # IMMEDIATE) makes a concurrent commit unreachable: the newer version is
            # written in the unit of work's own transaction, as the guarded UPDATE
            # would find it.
            assert isinstance(uow, SqlUnitOfWork)
            await uow.connection.execute(bump, {"id": product_id})
            return
        async with self.engine.begin() as conn:
            await conn.execute(bump, {"id": product_id})


@pytest.fixture(params=[pytest.param("fake", id="fake"), *DATABASES])
async def harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    if request.param == "fake":
        yield FakeHarness()
        return
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'write.db'}"
    else:
        url = str(request.getfixturevalue("fresh_postgres_database"))
    engine = create_engine(url)
    await migrate(engine)
    try:
        yield SqlHarness(engine)
    finally:
        await engine.dispose()


# --- aggregates ---


def _product(id: str = "p-1", sku: str = "MUG-1") -> Product:
    return Product.create(
        id,
        sku=sku,
        name="Blue mug",
        price=1250,
        currency="EUR",
        now=NOW - timedelta(days=1),
        description="Holds tea.\nAnd coffee.",
        category="kitchen",
        tags=["blue", "ceramic"],
    )


def _stock(product_id: str = "p-1", on_hand: int = 10) -> Stock:
    item = Stock(product_id)
    item.receive(on_hand)
    return item


def _customer(id: str = "c-1", email: str = "ada@example.com") -> Customer:
    return Customer.register(id, email=email, name="Ada")


def _order(id: str = "o-1") -> Order:
    lines = [
        OrderLine(product_id="p-1", sku="MUG-1", quantity=2, unit_price=1250),
        OrderLine(product_id="p-2", sku="POT-1", quantity=1, unit_price=3000),
    ]
    return Order.place(id, customer_id="c-1", lines=lines, currencies={"EUR"}, now=NOW)


def _state(aggregate: Aggregate | None) -> dict[str, Any]:
    """An aggregate's fields, its unsaved events aside."""
    assert aggregate is not None
    fields = dataclasses.asdict(aggregate)
    del fields["pending"]
    return fields


async def _commit(uow: UnitOfWork, correlation_id: str = "corr", **kwargs: Any) -> int:
    return await uow.commit(correlation_id=correlation_id, now=NOW, actor=CLERK, **kwargs)


async def _shop(harness: Harness) -> int:
    """Two products with stock, a customer and their order, committed together."""
    async with harness.unit_of_work() as uow:
        for product in (_product(), _product("p-2", "POT-1")):
            uow.products.add(product)
            uow.stocks.add(_stock(product.id))
        uow.customers.add(_customer())
        uow.orders.add(_order())
        return await _commit(uow)


def _remember(key: str = "k-1", *, expires_at: datetime = NOW + timedelta(hours=1)) -> Remember:
    return Remember(
        scope="staff:clerk-7",
        key=key,
        request_hash="h-1",
        result={"id": "p-9"},
        expires_at=expires_at,
    )


class TestUnitOfWorkContract:
    # --- save and load ---

    async def test_each_aggregate_saved_is_loaded_back_as_it_was(self, harness: Harness) -> None:
        saved = {
            "products": [_product(), _product("p-2", "POT-1")],
            "stocks": [_stock("p-1"), _stock("p-2")],
            "customers": [_customer()],
            "orders": [_order()],
        }
        async with harness.unit_of_work() as uow:
            for name, aggregates in saved.items():
                for aggregate in aggregates:
                    getattr(uow, name).add(aggregate)
            await _commit(uow)

        async with harness.unit_of_work() as uow:
            for name, aggregates in saved.items():
                for aggregate in aggregates:
                    loaded = await getattr(uow, name).get(aggregate.id)
                    assert _state(loaded) == _state(aggregate), name
                    assert loaded.pending == []

    async def test_a_product_is_found_by_its_sku_as_the_same_object_as_by_its_id(
        self, harness: Harness
    ) -> None:
        await _shop(harness)

        async with harness.unit_of_work() as uow:
            by_sku = await uow.products.get_by_sku("POT-1")
            assert by_sku is not None and by_sku.id == "p-2"
            assert await uow.products.get("p-2") is by_sku
            assert await uow.products.get_by_sku("NONE-1") is None
            assert await uow.products.get("p-404") is None

    async def test_changes_to_loaded_aggregates_are_saved_with_their_new_versions(
        self, harness: Harness
    ) -> None:
        await _shop(harness)

        async with harness.unit_of_work() as uow:
            product = await uow.products.get("p-1")
            item = await uow.stocks.get("p-1")
            customer = await uow.customers.get("c-1")
            order = await uow.orders.get("o-1")
            assert product and item and customer and order
            product.change_price(1500)
            item.reserve("o-1", 2)
            order.pay(NOW + timedelta(minutes=5))
            customer.erase()
            await _commit(uow)
            changed = [product, item, customer, order]

        async with harness.unit_of_work() as uow:
            reloaded = [
                await uow.products.get("p-1"),
                await uow.stocks.get("p-1"),
                await uow.customers.get("c-1"),
                await uow.orders.get("o-1"),
            ]
        assert [_state(a) for a in reloaded] == [_state(a) for a in changed]
        assert [a.version for a in changed] == [2, 2, 2, 2]

    async def test_a_taken_email_is_known_before_commit_and_refused_at_it(
        self, harness: Harness
    ) -> None:
        await _shop(harness)

        async with harness.unit_of_work() as uow:
            assert await uow.customers.email_taken("ada@example.com")
            assert not await uow.customers.email_taken("bob@example.com")
            uow.customers.add(_customer("c-2", "ada@example.com"))
            with pytest.raises(AlreadyExists) as refused:
                await _commit(uow)
        assert refused.value.code == "EMAIL_TAKEN"

    async def test_a_taken_sku_is_refused_at_commit_naming_it(self, harness: Harness) -> None:
        await _shop(harness)
        before = await harness.events_after(0)

        async with harness.unit_of_work() as uow:
            uow.products.add(_product("p-3", "MUG-1"))
            with pytest.raises(AlreadyExists) as refused:
                await _commit(uow)

        assert (refused.value.code, refused.value.field) == ("SKU_TAKEN", "sku")
        assert "MUG-1" in str(refused.value)
        assert await harness.events_after(0) == before

    # --- optimistic concurrency ---

    async def test_a_row_that_moved_on_since_it_was_loaded_fails_the_whole_commit(
        self, harness: Harness
    ) -> None:
        head = await _shop(harness)

        async with harness.unit_of_work() as uow:
            product = await uow.products.get("p-1")
            assert product is not None
            product.change_price(1900)
            uow.products.add(_product("p-3", "CUP-1"))
            await harness.another_writer_changes(uow, "p-1")
            with pytest.raises(ConcurrencyConflict) as conflict:
                await _commit(uow)

        assert (conflict.value.code, conflict.value.expected, conflict.value.actual) == (
            "VERSION_CONFLICT",
            1,
            2,
        )
        assert await harness.events_after(head) == []
        async with harness.unit_of_work() as uow:
            assert await uow.products.get("p-3") is None
            stored = await uow.products.get("p-1")
            assert stored is not None and stored.price == 1250

    # --- rollback ---

    async def test_a_unit_of_work_left_without_commit_leaves_nothing(
        self, harness: Harness
    ) -> None:
        head = await _shop(harness)

        async with harness.unit_of_work() as uow:
            uow.products.add(_product("p-3", "CUP-1"))
            uow.stocks.add(_stock("p-3"))
            item = await uow.stocks.get("p-1")
            assert item is not None
            item.receive(5)
            await uow.rollback()

        with pytest.raises(RuntimeError, match="handler failed"):
            async with harness.unit_of_work() as uow:
                uow.customers.add(_customer("c-2", "bob@example.com"))
                raise RuntimeError("handler failed")

        assert await harness.events_after(head) == []
        async with harness.unit_of_work() as uow:
            assert await uow.products.get("p-3") is None
            assert await uow.stocks.get("p-3") is None
            assert await uow.customers.get("c-2") is None
            item = await uow.stocks.get("p-1")
            assert item is not None and (item.on_hand, item.version) == (10, 1)
            assert await _commit(uow) == head  # nothing changed: the head answers

    # --- the outbox ---

    async def test_events_are_appended_in_the_order_recorded_with_growing_positions(
        self, harness: Harness
    ) -> None:
        head = await _shop(harness)
        first = await harness.events_after(0)

        assert [(e.event_type, e.aggregate_id, e.aggregate_version) for e in first] == [
            ("ProductCreated", "p-1", 1),
            ("ProductCreated", "p-2", 1),
            ("StockReceived", "p-1", 1),
            ("StockReceived", "p-2", 1),
            ("CustomerRegistered", "c-1", 1),
            ("OrderPlaced", "o-1", 1),
        ]
        positions = [e.position for e in first]
        assert positions == sorted(set(positions)) and positions[-1] == head
        assert {
            (e.correlation_id, e.occurred_at, e.actor_role, e.actor_subject) for e in first
        } == {("corr", NOW, "staff", "clerk-7")}

        async with harness.unit_of_work() as uow:
            product = await uow.products.get("p-1")
            assert product is not None
            product.change_price(1300)
            product.change_price(1400)
            position = await _commit(uow, "corr-2")

        second = await harness.events_after(head)
        assert [(e.event_type, e.aggregate_version, e.payload["new_price"]) for e in second] == [
            ("PriceChanged", 2, 1300),
            ("PriceChanged", 3, 1400),
        ]
        assert head < second[0].position < second[1].position == position

    async def test_erasing_a_customer_empties_their_stored_events_payloads(
        self, harness: Harness
    ) -> None:
        head = await _shop(harness)

        async with harness.unit_of_work() as uow:
            customer = await uow.customers.get("c-1")
            assert customer is not None
            customer.erase()
            await _commit(uow)

        theirs = [e for e in await harness.events_after(0) if e.aggregate_id == "c-1"]
        assert [(e.event_type, e.payload) for e in theirs] == [
            ("CustomerRegistered", {}),
            ("CustomerErased", {}),
        ]
        others = [e for e in await harness.events_after(0) if e.position <= head]
        assert all(e.payload for e in others if e.aggregate_id != "c-1")

    # --- idempotency keys ---

    async def test_a_remembered_result_is_recalled_with_its_position_in_its_scope_only(
        self, harness: Harness
    ) -> None:
        async with harness.unit_of_work() as uow:
            uow.products.add(_product())
            position = await _commit(uow, remember=_remember())

        async with harness.unit_of_work() as uow:
            recalled = await uow.recall("staff:clerk-7", "k-1", NOW)
            assert recalled is not None
            assert (recalled.request_hash, recalled.result) == (
                "h-1",
                {"id": "p-9", "position": position},
            )
            assert await uow.recall("customer:someone", "k-1", NOW) is None
            assert await uow.recall("staff:clerk-7", "k-2", NOW) is None
            assert await uow.recall("staff:clerk-7", "k-1", NOW + timedelta(hours=1)) is None

    async def test_a_live_key_cannot_be_remembered_twice_and_the_loser_writes_nothing(
        self, harness: Harness
    ) -> None:
        async with harness.unit_of_work() as uow:
            uow.products.add(_product())
            head = await _commit(uow, remember=_remember())

        async with harness.unit_of_work() as uow:
            uow.products.add(_product("p-2", "POT-1"))
            with pytest.raises(IdempotencyRace):
                await _commit(uow, remember=_remember())

        assert await harness.events_after(head) == []
        async with harness.unit_of_work() as uow:
            assert await uow.products.get("p-2") is None
            recalled = await uow.recall("staff:clerk-7", "k-1", NOW)
            assert recalled is not None and recalled.result["position"] == head

    async def test_an_expired_key_gives_way_to_a_new_result(self, harness: Harness) -> None:
        async with harness.unit_of_work() as uow:
            uow.products.add(_product())
            await _commit(uow, remember=_remember(expires_at=NOW))

        async with harness.unit_of_work() as uow:
            uow.products.add(_product("p-2", "POT-1"))
            position = await _commit(
                uow, remember=dataclasses.replace(_remember(), request_hash="h-2")
            )

        async with harness.unit_of_work() as uow:
            recalled = await uow.recall("staff:clerk-7", "k-1", NOW)
        assert recalled is not None
        assert (recalled.request_hash, recalled.result["position"]) == ("h-2", position)
