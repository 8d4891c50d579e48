"""Every command through the command service, on SQLite and PostgreSQL alike.

Each test looks at three things: the outcome the caller gets, the events the
outbox holds, and the rows in the tables (read with SQLAlchemy Core).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Table, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from domain import commands as c
from domain.errors import AlreadyExists, ConcurrencyConflict, DomainError, NotFound
from domain.stock import Stock
from writemodel import outbox
from writemodel.access import SYSTEM
from writemodel.database import read_only
from writemodel.outbox import StoredEvent
from writemodel.service import CommandOutcome, CommandService, IdempotencyKeyReused
from writemodel.sql_repositories import SqlStocks
from writemodel.sql_unit_of_work import SqlUnitOfWork
from writemodel.tables import (
    customers,
    events,
    idempotency_keys,
    order_lines,
    orders,
    products,
    stock,
)
from writemodel.unit_of_work import CommitOutcomeUnknown

T0 = datetime(2030, 5, 17, 9, 0, tzinfo=UTC)
ALL_TABLES = (products, stock, customers, orders, order_lines, events, idempotency_keys)


@dataclass
class Clock:
    """A clock the test moves by hand."""

    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def service(engine: AsyncEngine, clock: Clock) -> CommandService:
    return CommandService(lambda: SqlUnitOfWork(engine), clock=clock)


# --- reading the write database ---


async def _events_after(engine: AsyncEngine, position: int) -> list[StoredEvent]:
    async with read_only(engine) as conn:
        return await outbox.read_after(conn, position, 10_000)


async def _head(engine: AsyncEngine) -> int:
    async with read_only(engine) as conn:
        position, _ = await outbox.head(conn)
        return position


async def _row(engine: AsyncEngine, table: Table, id: str) -> dict[str, Any]:
    key = table.c.product_id if table is stock else table.c.id
    async with read_only(engine) as conn:
        row = (await conn.execute(select(table).where(key == id))).mappings().one()
    return dict(row)


async def _everything(engine: AsyncEngine) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table the commands write, for a before/after comparison."""
    async with read_only(engine) as conn:
        found = {}
        for table in ALL_TABLES:
            rows = await conn.execute(select(table).order_by(*table.primary_key.columns))
            found[table.name] = [dict(r) for r in rows.mappings()]
        return found


def _types(stored: list[StoredEvent]) -> list[str]:
    return sorted(e.event_type for e in stored)


class Recorder:
    """Runs commands and checks each one's events against the outbox head."""

    def __init__(self, engine: AsyncEngine, service: CommandService) -> None:
        self.engine = engine
        self.service = service

    async def run(
        self, command: c.Command, expected_events: list[str], **options: Any
    ) -> CommandOutcome:
        before = await _head(self.engine)
        outcome = await self.service.execute(command, **{"actor": SYSTEM, **options})
        written = await _events_after(self.engine, before)
        assert _types(written) == sorted(expected_events)
        if written:
            assert outcome.position == written[-1].position
        return outcome


@pytest.fixture
def run(engine: AsyncEngine, service: CommandService) -> Recorder:
    return Recorder(engine, service)


async def _product(
    service: CommandService, sku: str = "MUG-1", stock_: int = 10, **extra: Any
) -> dict[str, Any]:
    fields: dict[str, Any] = {"name": f"Product {sku}", "price": 1250, "currency": "EUR"}
    fields.update(extra)
    created = await service.execute(
        c.CreateProduct(sku=sku, initial_stock=stock_, **fields), actor=SYSTEM
    )
    return created.snapshot


async def _customer(service: CommandService, email: str = "ann@example.com") -> str:
    registered = await service.execute(c.RegisterCustomer(email=email, name="Ann"), actor=SYSTEM)
    return str(registered.snapshot["id"])


async def _order(service: CommandService, customer_id: str, *lines: tuple[str, int]) -> str:
    placed = await service.execute(
        c.PlaceOrder(customer_id, tuple(c.OrderLineRequest(sku, qty) for sku, qty in lines)),
        actor=SYSTEM,
    )
    return str(placed.snapshot["id"])


async def _refused(
    engine: AsyncEngine, service: CommandService, command: c.Command, **options: Any
) -> DomainError:
    """Runs a command that must fail, and checks that it wrote nothing at all."""
    before = await _everything(engine)
    with pytest.raises(DomainError) as refused:
        await service.execute(command, **{"actor": SYSTEM, **options})
    assert await _everything(engine) == before
    return refused.value


# --- every command works ---


async def test_creating_a_product_stores_it_with_its_stock(
    engine: AsyncEngine, run: Recorder
) -> None:
    created = await run.run(
        c.CreateProduct(
            sku=" mug-1 ",
            name="Blue mug",
            price=1250,
            currency="eur",
            description="Stoneware",
            category="Kitchen",
            tags=("tea", "Blue"),
            initial_stock=5,
        ),
        ["ProductCreated", "StockReceived"],
    )

    snapshot = created.snapshot
    assert (snapshot["sku"], snapshot["version"], snapshot["status"]) == ("MUG-1", 1, "active")
    assert snapshot["stock"] == {
        "version": 1,
        "on_hand": 5,
        "reserved": 0,
        "available": 5,
        "units_sold": 0,
    }
    row = await _row(engine, products, snapshot["id"])
    assert {k: row[k] for k in ("sku", "name", "category", "tags", "price", "currency")} == {
        "sku": "MUG-1",
        "name": "Blue mug",
        "category": "kitchen",
        "tags": ["blue", "tea"],
        "price": 1250,
        "currency": "EUR",
    }
    assert (row["status"], row["version"]) == ("active", 1)
    item = await _row(engine, stock, snapshot["id"])
    assert (item["on_hand"], item["reserved"], item["units_sold"], item["version"]) == (5, 0, 0, 1)


async def test_creating_a_product_without_stock_records_only_its_creation(
    engine: AsyncEngine, run: Recorder
) -> None:
    created = await run.run(
        c.CreateProduct(sku="MUG-1", name="Mug", price=900, currency="EUR", status="draft"),
        ["ProductCreated"],
    )

    assert created.snapshot["status"] == "draft"
    assert (await _row(engine, products, created.snapshot["id"]))["status"] == "draft"
    item = await _row(engine, stock, created.snapshot["id"])
    assert (item["on_hand"], item["reserved"], item["version"]) == (0, 0, 0)


async def test_updating_a_product_changes_its_row_and_records_product_updated(
    engine: AsyncEngine, service: CommandService, run: Recorder
) -> None:
    product = await _product(service, status="draft")

    updated = await run.run(
        c.UpdateProduct(
            product["id"],
            name="Green mug",
            description="Glazed",
            tags=("gift",),
            status="active",
            expected_version=1,
        ),
        ["ProductUpdated"],
    )

    assert (updated.snapshot["name"], updated.snapshot["status"]) == ("Green mug", "active")
    assert updated.snapshot["version"] == 2
    row = await _row(engine, products, product["id"])
    assert (row["name"], row["description"], row["tags"], row["status"], row["version"]) == (
        "Green mug",
        "Glazed",
        ["gift"],
        "active",
        2,
    )


async def test_changing_the_price_records_price_changed(
    engine: AsyncEngine, service: CommandService, run: Recorder
) -> None:
    product = await _product(service)

    changed = await run.run(c.ChangePrice(product["id"], 1500, "USD"), ["PriceChanged"])

    assert (changed.snapshot["price"], changed.snapshot["currency"]) == (1500, "USD")
    (event,) = await _events_after(engine, changed.position - 1)
    assert event.payload == {"old_price": 1250, "new_price": 1500, "currency": "USD"}
    row = await _row(engine, products, product["id"])
    assert (row["price"], row["currency"], row["version"]) == (1500, "USD", 2)


async def test_a_command_that_changes_nothing_answers_with_the_outbox_head(
    engine: AsyncEngine, service: CommandService, run: Recorder
) -> None:
    product = await _product(service)
    head = await _head(engine)

    unchanged = await run.run(c.ChangePrice(product["id"], 1250), [])

    assert unchanged.position == head
    assert unchanged.snapshot["version"] == 1


async def test_discontinuing_a_product_records_product_discontinued(
    engine: AsyncEngine, service: CommandService, run: Recorder
) -> None:
    product = await _product(service)

    discontinued = await run.run(c.DiscontinueProduct(product["id"]), ["ProductDiscontinued"])

    assert discontinued.snapshot["status"] == "discontinued"
    row = await _row(engine, products, product["id"])
    assert (row["status"], row["version"]) == ("discontinued", 2)


async def test_receiving_stock_adds_to_on_hand(
    engine: AsyncEngine, service: CommandService, run: Recorder
) -> None:
    product = await _product(service, stock_=10)

    received = await run.run(c.ReceiveStock(product["id"], 7), ["StockReceived"])

    assert received.snapshot["stock"]["on_hand"] == 17
    item = await _row(engine, stock, product["id"])
    assert (item["on_hand"], item["version"]) == (17, 2)


async def test_adjusting_stock_sets_on_hand_to_the_counted_figure(
    engine: AsyncEngine, service: CommandService, run: Recorder
) -> None:
    product = await _product(service, stock_=10)

    adjusted = await run.run(c.AdjustStock(product["id"], 4, "stocktake"), ["StockAdjusted"])

    assert adjusted.snapshot["stock"]["on_hand"] == 4
    (event,) = await _events_after(engine, adjusted.position - 1)
    assert event.payload == {"old_on_hand": 10, "on_hand": 4, "reason": "stocktake"}
    assert (await _row(engine, stock, product["id"]))["on_hand"] == 4


async def test_registering_a_customer_stores_the_normalised_email(
    engine: AsyncEngine, run: Recorder
) -> None:
    registered = await run.run(
        c.RegisterCustomer(email=" Ann@Example.COM ", name="Ann"), ["CustomerRegistered"]
    )

    assert registered.snapshot["email"] == "ann@example.com"
    row = await _row(engine, customers, registered.snapshot["id"])
    assert (row["email"], row["name"], row["erased"], row["version"]) == (
        "ann@example.com",
        "Ann",
        False,
        1,
    )


async def test_erasing_a_customer_removes_their_personal_data(
    engine: AsyncEngine, service: CommandService, run: Recorder
) -> None:
    customer_id = await _customer(service)

    erased = await run.run(c.EraseCustomer(customer_id), ["CustomerErased"])

    assert (erased.snapshot["email"], erased.snapshot["name"], erased.snapshot["erased"]) == (
        None,
        None,
        True,
    )
    row = await _row(engine, customers, customer_id)
    assert (row["email"], row["name"], row["erased"], row["version"]) == (None, None, True, 2)


async def test_placing_an_order_reserves_its_stock(
    engine: AsyncEngine, service: CommandService, run: Recorder
) -> None:
    mug = await _product(service, "MUG-1", stock_=10, price=1250)
    pot = await _product(service, "POT-1", stock_=3, price=4000)
    customer_id = await _customer(service)

    placed = await run.run(
        c.PlaceOrder(customer_id, (c.OrderLineRequest("mug-1", 2), c.OrderLineRequest("POT-1", 3))),
        ["OrderPlaced", "StockReserved", "StockReserved"],
    )

    order = placed.snapshot
    assert (order["status"], order["total"], order["currency"]) == ("placed", 14500, "EUR")
    assert [(ln["sku"], ln["quantity"], ln["unit_price"]) for ln in order["lines"]] == [
        ("MUG-1", 2, 1250),
        ("POT-1", 3, 4000),
    ]
    row = await _row(engine, orders, order["id"])
    assert (row["status"], row["total"], row["customer_id"], row["version"]) == (
        "placed",
        14500,
        customer_id,
        1,
    )
    async with engine.connect() as conn:
        lines = (
            await conn.execute(
                select(order_lines.c.product_id, order_lines.c.quantity, order_lines.c.unit_price)
                .where(order_lines.c.order_id == order["id"])
                .order_by(order_lines.c.line_no)
            )
        ).all()
    assert [tuple(ln) for ln in lines] == [(mug["id"], 2, 1250), (pot["id"], 3, 4000)]
    assert (await _row(engine, stock, mug["id"]))["reserved"] == 2
    assert (await _row(engine, stock, pot["id"]))["reserved"] == 3
    assert (await _row(engine, stock, pot["id"]))["on_hand"] == 3


async def test_paying_an_order_records_order_paid(
    engine: AsyncEngine, service: CommandService, run: Recorder
) -> None:
    await _product(service, "MUG-1")
    order_id = await _order(service, await _customer(service), ("MUG-1", 1))

    paid = await run.run(c.PayOrder(order_id, expected_version=1), ["OrderPaid"])

    assert (paid.snapshot["status"], paid.snapshot["paid_at"]) == ("paid", T0.isoformat())
    row = await _row(engine, orders, order_id)
    assert (row["status"], row["version"]) == ("paid", 2)
    assert row["paid_at"] is not None


async def test_shipping_an_order_commits_its_stock(
    engine: AsyncEngine, service: CommandService, run: Recorder
) -> None:
    mug = await _product(service, "MUG-1", stock_=10)
    pot = await _product(service, "POT-1", stock_=5)
    order_id = await _order(service, await _customer(service), ("MUG-1", 2), ("POT-1", 5))
    await service.execute(c.PayOrder(order_id), actor=SYSTEM)

    shipped = await run.run(
        c.ShipOrder(order_id), ["OrderShipped", "StockCommitted", "StockCommitted"]
    )

    assert shipped.snapshot["status"] == "shipped"
    assert (await _row(engine, orders, order_id))["status"] == "shipped"
    for product, on_hand, sold in ((mug, 8, 2), (pot, 0, 5)):
        item = await _row(engine, stock, product["id"])
        assert (item["on_hand"], item["reserved"], item["units_sold"]) == (on_hand, 0, sold)


async def test_cancelling_an_order_releases_its_stock(
    engine: AsyncEngine, service: CommandService, run: Recorder
) -> None:
    mug = await _product(service, "MUG-1", stock_=10)
    order_id = await _order(service, await _customer(service), ("MUG-1", 4))
    assert (await _row(engine, stock, mug["id"]))["reserved"] == 4

    cancelled = await run.run(
        c.CancelOrder(order_id, reason="changed my mind"), ["OrderCancelled", "StockReleased"]
    )

    assert cancelled.snapshot["status"] == "cancelled"
    assert (await _row(engine, orders, order_id))["status"] == "cancelled"
    item = await _row(engine, stock, mug["id"])
    assert (item["on_hand"], item["reserved"], item["units_sold"]) == (10, 0, 0)


async def test_every_command_writes_its_events_under_the_callers_correlation_id(
    engine: AsyncEngine, service: CommandService
) -> None:
    outcome = await service.execute(
        c.CreateProduct(sku="MUG-1", name="Mug", price=100, currency="EUR", initial_stock=1),
        correlation_id="request-42",
        actor=SYSTEM,
    )

    stored = await _events_after(engine, 0)
    assert {e.correlation_id for e in stored} == {"request-42"}
    assert {e.occurred_at for e in stored} == {T0}
    assert stored[-1].position == outcome.position


# --- orders and their refusals ---


async def _orderable_setup(service: CommandService) -> str:
    await _product(service, "MUG-1", stock_=5)
    return await _customer(service)


@pytest.mark.parametrize(
    ("setup", "lines", "code", "field"),
    [
        pytest.param(
            "discontinued", (("OLD-1", 1),), "PRODUCT_NOT_ORDERABLE", "lines.0.sku", id="disc"
        ),
        pytest.param("draft", (("NEW-1", 1),), "PRODUCT_NOT_ORDERABLE", "lines.0.sku", id="draft"),
        pytest.param(
            "none", (("MUG-1", 6),), "INSUFFICIENT_STOCK", "lines.0.quantity", id="too-many"
        ),
        pytest.param("none", (("NOPE-1", 1),), "NOT_FOUND", "lines.0.sku", id="unknown-sku"),
        pytest.param("erased", (("MUG-1", 1),), "CUSTOMER_ERASED", "customerId", id="erased"),
    ],
)
async def test_an_order_that_cannot_be_served_is_refused_and_writes_nothing(
    engine: AsyncEngine,
    service: CommandService,
    setup: str,
    lines: tuple[tuple[str, int], ...],
    code: str,
    field: str,
) -> None:
    customer_id = await _orderable_setup(service)
    if setup == "discontinued":
        old = await _product(service, "OLD-1", stock_=5)
        await service.execute(c.DiscontinueProduct(old["id"]), actor=SYSTEM)
    elif setup == "draft":
        await _product(service, "NEW-1", stock_=5, status="draft")
    elif setup == "erased":
        await service.execute(c.EraseCustomer(customer_id), actor=SYSTEM)

    error = await _refused(
        engine,
        service,
        c.PlaceOrder(customer_id, tuple(c.OrderLineRequest(s, q) for s, q in lines)),
    )

    assert (error.code, error.field) == (code, field)


async def test_an_order_for_an_unknown_customer_is_refused(
    engine: AsyncEngine, service: CommandService
) -> None:
    await _orderable_setup(service)

    error = await _refused(
        engine, service, c.PlaceOrder("no-such-customer", (c.OrderLineRequest("MUG-1", 1),))
    )

    assert isinstance(error, NotFound)
    assert error.field == "customerId"


async def test_a_failing_second_line_undoes_the_reservation_of_the_first(
    engine: AsyncEngine, service: CommandService
) -> None:
    mug = await _product(service, "MUG-1", stock_=5)
    await _product(service, "POT-1", stock_=1)
    customer_id = await _customer(service)

    error = await _refused(
        engine,
        service,
        c.PlaceOrder(customer_id, (c.OrderLineRequest("MUG-1", 2), c.OrderLineRequest("POT-1", 2))),
    )

    assert (error.code, error.field) == ("INSUFFICIENT_STOCK", "lines.1.quantity")
    assert (await _row(engine, stock, mug["id"]))["reserved"] == 0


async def test_an_illegal_transition_is_refused_and_writes_nothing(
    engine: AsyncEngine, service: CommandService
) -> None:
    await _product(service, "MUG-1")
    order_id = await _order(service, await _customer(service), ("MUG-1", 1))

    error = await _refused(engine, service, c.ShipOrder(order_id))

    assert error.code == "ILLEGAL_STATUS_TRANSITION"


# --- unique sku and email ---


async def test_a_second_product_with_the_same_sku_is_refused(
    engine: AsyncEngine, service: CommandService
) -> None:
    await _product(service, "MUG-1")

    error = await _refused(
        engine, service, c.CreateProduct(sku="mug-1", name="Other", price=1, currency="EUR")
    )

    assert isinstance(error, AlreadyExists)
    assert (error.code, error.field) == ("SKU_TAKEN", "sku")
    assert error.message == "a product with sku MUG-1 exists"


async def test_a_taken_sku_refused_at_commit_stores_no_idempotency_key(
    engine: AsyncEngine, service: CommandService
) -> None:
    await _product(service, "MUG-1")
    taken = c.CreateProduct(sku="MUG-1", name="Other", price=1, currency="EUR")

    error = await _refused(engine, service, taken, idempotency_key="create-other")

    assert (error.code, error.field) == ("SKU_TAKEN", "sku")


async def test_a_second_customer_with_the_same_email_is_refused(
    engine: AsyncEngine, service: CommandService
) -> None:
    await _customer(service, "ann@example.com")

    error = await _refused(engine, service, c.RegisterCustomer(email="ANN@example.com", name="B"))

    assert isinstance(error, AlreadyExists)
    assert (error.code, error.field) == ("EMAIL_TAKEN", "email")


async def test_an_erased_customers_email_is_free_again(
    engine: AsyncEngine, service: CommandService
) -> None:
    first = await _customer(service, "ann@example.com")
    await service.execute(c.EraseCustomer(first), actor=SYSTEM)

    second = await _customer(service, "ann@example.com")

    assert second != first
    assert (await _row(engine, customers, second))["email"] == "ann@example.com"


# --- optimistic concurrency ---


async def _versioned_commands(service: CommandService) -> list[tuple[c.Command, c.Command]]:
    """(stale, current) pairs over all four aggregates, in order: each current one applies."""
    product = await _product(service, "MUG-1", stock_=10)
    await service.execute(c.ChangePrice(product["id"], 1300), actor=SYSTEM)  # product v2
    await service.execute(c.ReceiveStock(product["id"], 1), actor=SYSTEM)  # stock v2
    customer_id = await _customer(service)
    order_id = await _order(service, customer_id, ("MUG-1", 1))  # stock v3, order v1
    await service.execute(c.PayOrder(order_id), actor=SYSTEM)  # order v2
    return [
        (
            c.ChangePrice(product["id"], 1400, expected_version=1),
            c.ChangePrice(product["id"], 1400, expected_version=2),
        ),
        (
            c.UpdateProduct(product["id"], name="X", expected_version=1),
            c.UpdateProduct(product["id"], name="X", expected_version=3),
        ),
        (
            c.ReceiveStock(product["id"], 2, expected_version=2),
            c.ReceiveStock(product["id"], 2, expected_version=3),
        ),
        (
            c.AdjustStock(product["id"], 20, expected_version=3),
            c.AdjustStock(product["id"], 20, expected_version=4),
        ),
        (c.ShipOrder(order_id, expected_version=1), c.ShipOrder(order_id, expected_version=2)),
        (
            c.EraseCustomer(customer_id, expected_version=0),
            c.EraseCustomer(customer_id, expected_version=1),
        ),
        (
            c.DiscontinueProduct(product["id"], expected_version=2),
            c.DiscontinueProduct(product["id"], expected_version=4),
        ),
    ]


async def test_a_stale_expected_version_is_refused_and_the_current_one_applies(
    engine: AsyncEngine, service: CommandService
) -> None:
    for stale, current in await _versioned_commands(service):
        error = await _refused(engine, service, stale)
        assert isinstance(error, ConcurrencyConflict), stale
        assert (error.code, error.field) == ("VERSION_CONFLICT", "expectedVersion")

        before = await _head(engine)
        applied = await service.execute(current, actor=SYSTEM)
        assert applied.position > before, current


async def test_of_two_racing_guarded_commands_one_applies_and_one_conflicts(
    engine: AsyncEngine, service: CommandService
) -> None:
    product = await _product(service)

    results = await asyncio.gather(
        service.execute(c.ChangePrice(product["id"], 2000, expected_version=1), actor=SYSTEM),
        service.execute(c.ChangePrice(product["id"], 3000, expected_version=1), actor=SYSTEM),
        return_exceptions=True,
    )

    applied = [r for r in results if isinstance(r, CommandOutcome)]
    conflicts = [r for r in results if isinstance(r, ConcurrencyConflict)]
    assert (len(applied), len(conflicts)) == (1, 1), results
    row = await _row(engine, products, product["id"])
    assert (row["price"], row["version"]) == (applied[0].snapshot["price"], 2)
    assert _types(await _events_after(engine, applied[0].position - 1)) == ["PriceChanged"]


async def test_concurrent_unguarded_orders_all_succeed_until_stock_runs_out(
    engine: AsyncEngine, service: CommandService
) -> None:
    mug = await _product(service, "MUG-1", stock_=10)
    customer_id = await _customer(service)
    before = await _head(engine)

    results = await asyncio.gather(
        *(
            service.execute(
                c.PlaceOrder(customer_id, (c.OrderLineRequest("MUG-1", 1),)), actor=SYSTEM
            )
            for _ in range(10)
        ),
        return_exceptions=True,
    )

    # None named a version: a lost race must be retried, never shown to the caller.
    lost = [r for r in results if isinstance(r, BaseException)]
    if lost:
        raise lost[0]
    placed = [r for r in results if isinstance(r, CommandOutcome)]
    assert len({p.snapshot["id"] for p in placed}) == 10
    item = await _row(engine, stock, mug["id"])
    assert (item["on_hand"], item["reserved"], item["version"]) == (10, 10, 11)
    written = await _events_after(engine, before)
    assert _types(written) == sorted(["OrderPlaced", "StockReserved"] * 10)
    assert sorted(
        e.payload["reserved"] for e in written if e.event_type == "StockReserved"
    ) == list(range(1, 11))
    error = await _refused(
        engine, service, c.PlaceOrder(customer_id, (c.OrderLineRequest("MUG-1", 1),))
    )
    assert error.code == "INSUFFICIENT_STOCK"


class Rendezvous:
    """The first `parties` callers wait for each other (or for `timeout`); later ones pass."""

    def __init__(self, parties: int, timeout: float) -> None:
        self.parties = parties
        self.timeout = timeout
        self.arrived = 0
        self.all_here = asyncio.Event()

    async def meet(self) -> None:
        if self.arrived >= self.parties:
            return
        self.arrived += 1
        if self.arrived == self.parties:
            self.all_here.set()
        try:
            await asyncio.wait_for(self.all_here.wait(), self.timeout)
        except TimeoutError:
            pass  # the other is blocked on a lock we hold: there is no meeting to wait for


class StocksMeetingAfterTheFirstRow(SqlStocks):
    def __init__(self, conn: AsyncConnection, rendezvous: Rendezvous) -> None:
        super().__init__(conn)
        self.rendezvous = rendezvous
        self.met = False

    async def _save(self, item: Stock, now: datetime) -> None:
        await super()._save(item, now)
        if not self.met:
            self.met = True
            await self.rendezvous.meet()


class MeetingAfterTheFirstStockRow(SqlUnitOfWork):
    """Holds a commit after its first stock row is written, until another one gets there too.

    Two orders naming the same two products in opposite orders then each hold
    one row and want the other's: the interleaving that a lucky schedule may
    or may not produce, made certain."""

    def __init__(self, engine: AsyncEngine, rendezvous: Rendezvous) -> None:
        super().__init__(engine)
        self.rendezvous = rendezvous

    async def __aenter__(self) -> SqlUnitOfWork:
        await super().__aenter__()
        self.stocks = StocksMeetingAfterTheFirstRow(self.connection, self.rendezvous)
        return self


async def test_concurrent_orders_naming_products_in_opposite_order_both_succeed(
    engine: AsyncEngine, clock: Clock, request: pytest.FixtureRequest
) -> None:
    service = CommandService(lambda: SqlUnitOfWork(engine), clock=clock)
    mug = await _product(service, "MUG-1", stock_=10)
    pot = await _product(service, "POT-1", stock_=10)
    customer_id = await _customer(service)
    before = await _head(engine)
    rendezvous = Rendezvous(parties=2, timeout=1.0)
    meeting = CommandService(lambda: MeetingAfterTheFirstStockRow(engine, rendezvous), clock=clock)
    mug_then_pot = (c.OrderLineRequest("MUG-1", 1), c.OrderLineRequest("POT-1", 2))

    results = await asyncio.gather(
        meeting.execute(c.PlaceOrder(customer_id, mug_then_pot), actor=SYSTEM),
        meeting.execute(c.PlaceOrder(customer_id, mug_then_pot[::-1]), actor=SYSTEM),
        return_exceptions=True,
    )

    assert rendezvous.arrived == 2  # the premise: both commits reached a stock row
    for result in results:
        if isinstance(result, BaseException):
            raise result
    assert (await _row(engine, stock, mug["id"]))["reserved"] == 2
    assert (await _row(engine, stock, pot["id"]))["reserved"] == 4
    written = await _events_after(engine, before)
    assert _types(written) == sorted(["OrderPlaced"] * 2 + ["StockReserved"] * 4)


# --- idempotency keys ---


async def test_a_repeated_request_with_the_same_key_replays_the_first_result(
    engine: AsyncEngine, service: CommandService, clock: Clock
) -> None:
    command = c.CreateProduct(sku="MUG-1", name="Mug", price=100, currency="EUR", initial_stock=2)
    first = await service.execute(command, idempotency_key="create-mug", actor=SYSTEM)
    assert first.replayed is False
    clock.now = T0 + timedelta(hours=1)

    before = await _everything(engine)
    again = await service.execute(command, idempotency_key="create-mug", actor=SYSTEM)

    assert again.replayed is True
    assert (again.kind, again.snapshot, again.position) == (
        first.kind,
        first.snapshot,
        first.position,
    )
    assert await _everything(engine) == before


async def test_a_key_reused_with_a_different_input_is_refused_and_writes_nothing(
    engine: AsyncEngine, service: CommandService
) -> None:
    product = await _product(service)
    await service.execute(
        c.ReceiveStock(product["id"], 5), idempotency_key="delivery-7", actor=SYSTEM
    )

    error = await _refused(
        engine, service, c.ReceiveStock(product["id"], 6), idempotency_key="delivery-7"
    )

    assert isinstance(error, IdempotencyKeyReused)
    assert (error.code, error.field) == ("IDEMPOTENCY_KEY_REUSED", "idempotencyKey")


async def test_a_key_past_its_lifetime_runs_the_command_again(
    engine: AsyncEngine, clock: Clock
) -> None:
    service = CommandService(
        lambda: SqlUnitOfWork(engine), idempotency_ttl=timedelta(seconds=60), clock=clock
    )
    product = await _product(service, stock_=0)
    receive = c.ReceiveStock(product["id"], 5)
    first = await service.execute(receive, idempotency_key="delivery-7", actor=SYSTEM)

    clock.now = T0 + timedelta(seconds=59)
    within = await service.execute(receive, idempotency_key="delivery-7", actor=SYSTEM)
    clock.now = T0 + timedelta(seconds=61)
    after = await service.execute(receive, idempotency_key="delivery-7", actor=SYSTEM)
    clock.now = T0 + timedelta(seconds=62)
    replay_of_the_second = await service.execute(
        receive, idempotency_key="delivery-7", actor=SYSTEM
    )

    assert (within.replayed, within.position) == (True, first.position)
    assert after.replayed is False
    assert after.position > first.position
    assert after.snapshot["stock"]["on_hand"] == 10
    assert (await _row(engine, stock, product["id"]))["on_hand"] == 10
    assert (replay_of_the_second.replayed, replay_of_the_second.position) == (True, after.position)
    async with engine.connect() as conn:
        keys = (await conn.execute(select(idempotency_keys))).mappings().all()
    assert [(k["key"], k["result"]["position"]) for k in keys] == [("delivery-7", after.position)]


async def test_a_failed_command_does_not_store_its_key(
    engine: AsyncEngine, service: CommandService
) -> None:
    product = await _product(service, stock_=1)
    customer_id = await _customer(service)
    order = c.PlaceOrder(customer_id, (c.OrderLineRequest("MUG-1", 2),))

    await _refused(engine, service, order, idempotency_key="order-1")
    await service.execute(c.ReceiveStock(product["id"], 1), actor=SYSTEM)
    placed = await service.execute(order, idempotency_key="order-1", actor=SYSTEM)

    assert placed.replayed is False
    assert (await _row(engine, stock, product["id"]))["reserved"] == 2


async def _concurrently_with_one_key(
    engine: AsyncEngine, service: CommandService, command: c.Command
) -> tuple[CommandOutcome, CommandOutcome, list[StoredEvent]]:
    before = await _head(engine)
    results = await asyncio.gather(
        service.execute(command, idempotency_key="same-key", actor=SYSTEM),
        service.execute(command, idempotency_key="same-key", actor=SYSTEM),
        return_exceptions=True,
    )
    for result in results:
        if isinstance(result, BaseException):
            raise result
    first, second = (r for r in results if isinstance(r, CommandOutcome))
    return first, second, await _events_after(engine, before)


async def test_two_concurrent_requests_with_one_key_write_once(
    engine: AsyncEngine, service: CommandService
) -> None:
    product = await _product(service, stock_=0)

    first, second, written = await _concurrently_with_one_key(
        engine, service, c.ReceiveStock(product["id"], 5)
    )

    assert sorted([first.replayed, second.replayed]) == [False, True]
    assert (first.snapshot, first.position) == (second.snapshot, second.position)
    assert _types(written) == ["StockReceived"]
    assert (await _row(engine, stock, product["id"]))["on_hand"] == 5


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(
            lambda: c.CreateProduct(sku="MUG-9", name="Mug", price=100, currency="EUR"),
            id="create-product",
        ),
        pytest.param(
            lambda: c.RegisterCustomer(email="zoe@example.com", name="Zoe"),
            id="register-customer",
        ),
    ],
)
async def test_two_concurrent_creations_with_one_key_write_once(
    engine: AsyncEngine,
    service: CommandService,
    make: Callable[[], c.Command],
) -> None:

    first, second, written = await _concurrently_with_one_key(engine, service, make())

    assert sorted([first.replayed, second.replayed]) == [False, True]
    assert (first.snapshot, first.position) == (second.snapshot, second.position)
    assert len({e.correlation_id for e in written}) == 1


# --- lost connections ---

POSTGRES_ONLY = pytest.mark.parametrize(
    "database_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)


@asynccontextmanager
async def _another_session(database_url: str) -> AsyncIterator[AsyncConnection]:
    """A connection of its own, outside the service's pool, each statement committed at once
    (so that pg_stat_activity is read afresh every time)."""
    other = create_async_engine(database_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        async with other.connect() as conn:
            yield conn
    finally:
        await other.dispose()


async def _terminate_every_other_backend(database_url: str) -> int:
    """What a restarted server or a cut idle connection leaves in the pool: connections
    whose server processes are gone, which the pool does not know yet."""
    others = text(
        "SELECT pid FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    async with _another_session(database_url) as conn:
        pids = list(await conn.scalars(others))
        for pid in pids:
            await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        deadline = asyncio.get_running_loop().time() + 10
        while set(await conn.scalars(others)) & set(pids):
            assert asyncio.get_running_loop().time() < deadline, "a backend outlived its end"
            await asyncio.sleep(0.01)
    return len(pids)


async def _cut_off_the_next_commit(database_url: str) -> None:
    """The next COMMIT that carries events kills its own server process while it runs
    (a deferred trigger fires at COMMIT), so the transaction never commits and its
    client loses the connection while waiting for COMMIT's answer. Once only: a
    sequence is not rolled back with the transaction."""
    async with _another_session(database_url) as conn:
        await conn.execute(text("CREATE SEQUENCE commit_cut_offs"))
        await conn.execute(
            text(
                """
                CREATE FUNCTION cut_off_commit() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    IF nextval('commit_cut_offs') = 1 THEN
                        PERFORM pg_terminate_backend(pg_backend_pid());
                        PERFORM pg_sleep(30);  -- where the termination takes effect
                    END IF;
                    RETURN NULL;
                END $$
                """
            )
        )
        await conn.execute(
            text(
                "CREATE CONSTRAINT TRIGGER cut_off_commit AFTER INSERT ON events "
                "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION cut_off_commit()"
            )
        )


def _retries_on_a_new_connection(caplog: pytest.LogCaptureFixture) -> int:
    return sum("on a new connection" in r.getMessage() for r in caplog.records)


@POSTGRES_ONLY
async def test_commands_on_pooled_connections_whose_server_processes_died_still_succeed(
    engine: AsyncEngine,
    service: CommandService,
    database_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await asyncio.gather(*(_product(service, f"OLD-{i}") for i in range(4)))  # fills the pool
    before = await _head(engine)
    assert await _terminate_every_other_backend(database_url) >= 1

    created = await asyncio.gather(*(_product(service, f"NEW-{i}") for i in range(4)))

    assert sorted(p["sku"] for p in created) == [f"NEW-{i}" for i in range(4)]
    assert _retries_on_a_new_connection(caplog) >= 1  # the premise: a dead connection was used
    written = await _events_after(engine, before)
    assert _types(written) == sorted(["ProductCreated", "StockReceived"] * 4)  # each once
    for product in created:
        assert (await _row(engine, products, product["id"]))["sku"] == product["sku"]


@POSTGRES_ONLY
async def test_a_commit_cut_off_in_flight_is_not_run_again_without_an_idempotency_key(
    engine: AsyncEngine, service: CommandService, database_url: str
) -> None:
    await _cut_off_the_next_commit(database_url)
    before = await _everything(engine)

    with pytest.raises(CommitOutcomeUnknown):
        await service.execute(
            c.CreateProduct(sku="MUG-1", name="Mug", price=1, currency="EUR"), actor=SYSTEM
        )

    # This one did not commit; the service could not know, so it ran it only once.
    assert await _everything(engine) == before


@POSTGRES_ONLY
async def test_a_commit_cut_off_in_flight_runs_again_by_its_idempotency_key(
    engine: AsyncEngine, service: CommandService, database_url: str, run: Recorder
) -> None:
    await _cut_off_the_next_commit(database_url)

    created = await run.run(
        c.CreateProduct(sku="MUG-1", name="Mug", price=1, currency="EUR", initial_stock=2),
        ["ProductCreated", "StockReceived"],
        idempotency_key="create-mug",
    )

    # The first commit never landed, so the key had nothing to replay: the second applied.
    assert created.replayed is False
    assert (await _row(engine, stock, created.snapshot["id"]))["on_hand"] == 2
