"""The twelve command handlers, run through the command service over the fake unit of work."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any, get_type_hints

import pytest

from domain import commands as c
from domain.errors import (
    AlreadyExists,
    ConcurrencyConflict,
    DomainError,
    Forbidden,
    InvalidInput,
    NotFound,
    RuleBroken,
)
from domain.rules import MAX_ORDER_LINES, MAX_PRICE, MAX_QUANTITY, MAX_STOCK
from tests.unit.fakes import FakeClock, FakeStore, FakeUnitOfWork, sequential_ids
from writemodel.access import MAY_SEND, SYSTEM, Actor, may_send
from writemodel.handlers import HANDLERS
from writemodel.service import CommandOutcome, CommandService


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def service(store: FakeStore, clock: FakeClock) -> CommandService:
    return CommandService(lambda: FakeUnitOfWork(store), clock=clock, new_id=sequential_ids())


class Shop:
    """Arranges a store through the service itself, so every fixture is a real state."""

    def __init__(self, service: CommandService, store: FakeStore) -> None:
        self.service = service
        self.store = store

    async def run(self, command: c.Command, actor: Actor = SYSTEM) -> CommandOutcome:
        return await self.service.execute(command, correlation_id="test", actor=actor)

    async def product(
        self,
        sku: str = "SKU-1",
        *,
        price: int = 1000,
        currency: str = "EUR",
        stock: int = 10,
        status: str = "active",
    ) -> str:
        outcome = await self.run(
            c.CreateProduct(
                sku=sku,
                name=f"Product {sku}",
                price=price,
                currency=currency,
                initial_stock=stock,
                status=status,
            )
        )
        return str(outcome.snapshot["id"])

    async def customer(self, email: str = "ada@example.com") -> str:
        outcome = await self.run(c.RegisterCustomer(email=email, name="Ada Lovelace"))
        return str(outcome.snapshot["id"])

    async def order(self, customer_id: str, *lines: tuple[str, int]) -> str:
        requests = tuple(c.OrderLineRequest(sku=sku, quantity=q) for sku, q in lines)
        outcome = await self.run(c.PlaceOrder(customer_id=customer_id, lines=requests))
        return str(outcome.snapshot["id"])

    async def refused(self, command: c.Command, actor: Actor = SYSTEM) -> DomainError:
        """Runs a command that must fail, and checks that it wrote nothing at all."""
        before = self.store.state()
        with pytest.raises(DomainError) as caught:
            await self.run(command, actor)
        assert self.store.state() == before
        return caught.value


@pytest.fixture
def shop(service: CommandService, store: FakeStore) -> Shop:
    return Shop(service, store)


def new_events(store: FakeStore, since: int) -> list[tuple[str, str]]:
    return [(e.event_type, e.aggregate_id) for e in store.outbox if e.position > since]


# --- createProduct ---


async def test_creating_a_product_stores_it_with_its_stock_and_records_both_events(
    shop: Shop, store: FakeStore, clock: FakeClock
) -> None:
    outcome = await shop.run(
        c.CreateProduct(
            sku=" abc-1 ",
            name="Kettle",
            price=2599,
            currency="eur",
            description="Boils water",
            category="Kitchen",
            tags=("Steel", "kitchen"),
            initial_stock=7,
        )
    )

    assert outcome.kind == "Product"
    assert outcome.position == 2
    assert outcome.replayed is False
    assert outcome.snapshot == {
        "id": "id-1",
        "version": 1,
        "sku": "ABC-1",
        "name": "Kettle",
        "description": "Boils water",
        "category": "kitchen",
        "tags": ["kitchen", "steel"],
        "price": 2599,
        "currency": "EUR",
        "status": "active",
        "created_at": clock.now.isoformat(),
        "stock": {"version": 1, "on_hand": 7, "reserved": 0, "available": 7, "units_sold": 0},
    }
    assert store.products["id-1"].sku == "ABC-1"
    assert store.stocks["id-1"].on_hand == 7
    assert [(e.position, e.event_type, e.aggregate_id) for e in store.outbox] == [
        (1, "ProductCreated", "id-1"),
        (2, "StockReceived", "id-1"),
    ]
    created = store.outbox[0]
    assert created.aggregate_type == "Product"
    assert created.aggregate_version == 1
    assert created.correlation_id == "test"
    assert created.occurred_at == clock.now
    assert created.payload["sku"] == "ABC-1"


async def test_creating_a_product_without_initial_stock_records_only_its_creation(
    shop: Shop, store: FakeStore
) -> None:
    outcome = await shop.run(c.CreateProduct(sku="A", name="A", price=1, currency="EUR"))

    assert store.event_types() == ["ProductCreated"]
    assert store.stocks["id-1"].on_hand == 0
    assert store.stocks["id-1"].version == 0
    assert outcome.snapshot["stock"]["version"] == 0


async def test_a_product_can_start_as_a_draft_whatever_the_case_of_its_status(
    shop: Shop, store: FakeStore
) -> None:
    outcome = await shop.run(
        c.CreateProduct(sku="A", name="A", price=1, currency="EUR", status="DRAFT")
    )

    assert outcome.snapshot["status"] == "draft"
    assert store.products["id-1"].orderable is False


async def test_creating_a_product_with_a_taken_sku_is_refused_whatever_its_case(
    shop: Shop,
) -> None:
    await shop.product("ABC-1")

    error = await shop.refused(c.CreateProduct(sku="abc-1", name="B", price=1, currency="EUR"))

    assert isinstance(error, AlreadyExists)
    assert (error.code, error.field) == ("SKU_TAKEN", "sku")
    assert error.message == "a product with sku ABC-1 exists"


@pytest.mark.parametrize(
    ("changes", "code", "field"),
    [
        ({"sku": "no spaces"}, "SKU_MALFORMED", "sku"),
        ({"price": 0}, "PRICE_NOT_POSITIVE", "price"),
        ({"price": -5}, "PRICE_NOT_POSITIVE", "price"),
        ({"currency": "euro"}, "CURRENCY_MALFORMED", "currency"),
        ({"name": "  "}, "TEXT_OUT_OF_BOUNDS", "name"),
        ({"initial_stock": -1}, "INITIAL_STOCK_NEGATIVE", "initialStock"),
        ({"status": "sold-out"}, "STATUS_UNKNOWN", "status"),
        ({"status": "discontinued"}, "PRODUCT_DISCONTINUED", "status"),
        ({"tags": tuple(f"t{i}" for i in range(21))}, "TOO_MANY_TAGS", "tags"),
    ],
)
async def test_creating_a_product_with_bad_input_is_refused_naming_the_field(
    shop: Shop, changes: dict[str, Any], code: str, field: str
) -> None:
    arguments: dict[str, Any] = {"sku": "A-1", "name": "A", "price": 100, "currency": "EUR"}

    error = await shop.refused(c.CreateProduct(**{**arguments, **changes}))

    assert (error.code, error.field) == (code, field)


# --- updateProduct ---


async def test_updating_a_product_records_the_new_details(shop: Shop, store: FakeStore) -> None:
    product_id = await shop.product()

    outcome = await shop.run(
        c.UpdateProduct(
            product_id=product_id, name="Better name", tags=("New",), expected_version=1
        )
    )

    assert outcome.snapshot["name"] == "Better name"
    assert outcome.snapshot["tags"] == ["new"]
    assert outcome.snapshot["version"] == 2
    assert outcome.snapshot["stock"]["on_hand"] == 10
    assert store.products[product_id].name == "Better name"
    assert store.outbox[-1].event_type == "ProductUpdated"
    assert store.outbox[-1].payload["tags"] == ["new"]
    assert outcome.position == store.head


async def test_an_update_that_changes_nothing_records_nothing_and_answers_the_head(
    shop: Shop, store: FakeStore
) -> None:
    product_id = await shop.product()
    head = store.head

    outcome = await shop.run(c.UpdateProduct(product_id=product_id, name="Product SKU-1"))

    assert store.head == head
    assert outcome.position == head
    assert outcome.snapshot["version"] == 1


async def test_a_draft_product_can_be_activated(shop: Shop, store: FakeStore) -> None:
    product_id = await shop.product(status="draft")

    await shop.run(c.UpdateProduct(product_id=product_id, status="active"))

    assert store.products[product_id].orderable is True


async def test_updating_an_unknown_product_is_not_found_on_product_id(shop: Shop) -> None:
    error = await shop.refused(c.UpdateProduct(product_id="nope", name="x"))

    assert isinstance(error, NotFound)
    assert error.field == "productId"


async def test_updating_a_product_at_another_version_is_a_conflict(shop: Shop) -> None:
    product_id = await shop.product()

    error = await shop.refused(c.UpdateProduct(product_id=product_id, name="x", expected_version=7))

    assert isinstance(error, ConcurrencyConflict)
    assert (error.code, error.field, error.expected, error.actual) == (
        "VERSION_CONFLICT",
        "expectedVersion",
        7,
        1,
    )


@pytest.mark.parametrize(
    ("status", "code"),
    [
        ("discontinued", "DISCONTINUE_WITH_ITS_OWN_COMMAND"),
        ("draft", "ACTIVE_CANNOT_RETURN_TO_DRAFT"),
        ("gone", "STATUS_UNKNOWN"),
    ],
)
async def test_an_update_cannot_move_an_active_product_to_an_illegal_status(
    shop: Shop, status: str, code: str
) -> None:
    product_id = await shop.product()

    error = await shop.refused(c.UpdateProduct(product_id=product_id, status=status))

    assert (error.code, error.field) == (code, "status")


async def test_a_discontinued_product_cannot_be_updated(shop: Shop) -> None:
    product_id = await shop.product()
    await shop.run(c.DiscontinueProduct(product_id=product_id))

    error = await shop.refused(c.UpdateProduct(product_id=product_id, name="Revived"))

    assert isinstance(error, RuleBroken)
    assert error.code == "PRODUCT_DISCONTINUED"


# --- changePrice ---


async def test_changing_a_price_records_the_old_and_new_price(shop: Shop, store: FakeStore) -> None:
    product_id = await shop.product(price=1000)

    outcome = await shop.run(
        c.ChangePrice(product_id=product_id, price=1200, currency="usd", expected_version=1)
    )

    assert (outcome.snapshot["price"], outcome.snapshot["currency"]) == (1200, "USD")
    assert store.products[product_id].price == 1200
    assert store.outbox[-1].event_type == "PriceChanged"
    assert store.outbox[-1].payload == {"old_price": 1000, "new_price": 1200, "currency": "USD"}


async def test_changing_a_price_to_the_same_price_records_nothing(
    shop: Shop, store: FakeStore
) -> None:
    product_id = await shop.product(price=1000)
    head = store.head

    outcome = await shop.run(c.ChangePrice(product_id=product_id, price=1000))

    assert (store.head, outcome.position, outcome.snapshot["version"]) == (head, head, 1)


@pytest.mark.parametrize(("price", "code"), [(0, "PRICE_NOT_POSITIVE"), (-1, "PRICE_NOT_POSITIVE")])
async def test_a_price_must_be_positive(shop: Shop, price: int, code: str) -> None:
    product_id = await shop.product()

    error = await shop.refused(c.ChangePrice(product_id=product_id, price=price))

    assert (error.code, error.field) == (code, "price")


async def test_changing_the_price_of_an_unknown_product_is_not_found(shop: Shop) -> None:
    error = await shop.refused(c.ChangePrice(product_id="nope", price=5))

    assert isinstance(error, NotFound)
    assert error.field == "productId"


async def test_a_discontinued_product_keeps_its_last_price(shop: Shop) -> None:
    product_id = await shop.product()
    await shop.run(c.DiscontinueProduct(product_id=product_id))

    error = await shop.refused(c.ChangePrice(product_id=product_id, price=5))

    assert error.code == "PRODUCT_DISCONTINUED"


# --- discontinueProduct ---


async def test_discontinuing_a_product_records_it_once(shop: Shop, store: FakeStore) -> None:
    product_id = await shop.product()

    first = await shop.run(c.DiscontinueProduct(product_id=product_id))
    second = await shop.run(c.DiscontinueProduct(product_id=product_id))

    assert first.snapshot["status"] == "discontinued"
    assert second.snapshot["version"] == first.snapshot["version"] == 2
    assert store.event_types().count("ProductDiscontinued") == 1
    assert second.position == first.position


async def test_discontinuing_an_unknown_product_is_not_found(shop: Shop) -> None:
    error = await shop.refused(c.DiscontinueProduct(product_id="nope"))

    assert isinstance(error, NotFound)
    assert error.field == "productId"


async def test_discontinuing_a_product_at_another_version_is_a_conflict(shop: Shop) -> None:
    product_id = await shop.product()

    error = await shop.refused(c.DiscontinueProduct(product_id=product_id, expected_version=0))

    assert isinstance(error, ConcurrencyConflict)


# --- receiveStock ---


async def test_receiving_stock_adds_to_on_hand(shop: Shop, store: FakeStore) -> None:
    product_id = await shop.product(stock=10)

    outcome = await shop.run(c.ReceiveStock(product_id=product_id, quantity=5, expected_version=1))

    assert outcome.kind == "Product"
    assert outcome.snapshot["stock"] == {
        "version": 2,
        "on_hand": 15,
        "reserved": 0,
        "available": 15,
        "units_sold": 0,
    }
    assert outcome.snapshot["version"] == 1  # the product itself did not change
    assert store.stocks[product_id].on_hand == 15
    assert store.outbox[-1].event_type == "StockReceived"
    assert store.outbox[-1].payload == {"quantity": 5, "on_hand": 15}


async def test_receiving_stock_checks_the_stock_version_not_the_products(shop: Shop) -> None:
    product_id = await shop.product(stock=10)
    await shop.run(c.ReceiveStock(product_id=product_id, quantity=1))  # stock now at version 2

    error = await shop.refused(
        c.ReceiveStock(product_id=product_id, quantity=1, expected_version=1)
    )

    assert isinstance(error, ConcurrencyConflict)
    assert (error.expected, error.actual) == (1, 2)


@pytest.mark.parametrize("quantity", [0, -3])
async def test_receiving_a_non_positive_quantity_is_refused(shop: Shop, quantity: int) -> None:
    product_id = await shop.product()

    error = await shop.refused(c.ReceiveStock(product_id=product_id, quantity=quantity))

    assert (error.code, error.field) == ("QUANTITY_NOT_POSITIVE", "quantity")


async def test_receiving_stock_for_an_unknown_product_is_not_found(shop: Shop) -> None:
    error = await shop.refused(c.ReceiveStock(product_id="nope", quantity=1))

    assert isinstance(error, NotFound)
    assert error.field == "productId"


async def test_receiving_stock_for_a_product_without_a_stock_row_is_not_found(
    shop: Shop, store: FakeStore
) -> None:
    product_id = await shop.product()
    del store.stocks[product_id]

    error = await shop.refused(c.ReceiveStock(product_id=product_id, quantity=1))

    assert isinstance(error, NotFound)
    assert error.field == "productId"


# --- adjustStock ---


async def test_adjusting_stock_sets_the_counted_figure(shop: Shop, store: FakeStore) -> None:
    product_id = await shop.product(stock=10)

    outcome = await shop.run(c.AdjustStock(product_id=product_id, on_hand=4, reason="stocktake"))

    assert outcome.snapshot["stock"]["on_hand"] == 4
    assert store.stocks[product_id].on_hand == 4
    assert store.outbox[-1].event_type == "StockAdjusted"
    assert store.outbox[-1].payload == {"old_on_hand": 10, "on_hand": 4, "reason": "stocktake"}


async def test_adjusting_stock_below_what_orders_hold_is_refused(shop: Shop) -> None:
    product_id = await shop.product("A", stock=10)
    await shop.order(await shop.customer(), ("A", 6))

    error = await shop.refused(c.AdjustStock(product_id=product_id, on_hand=5))

    assert (error.code, error.field) == ("RESERVED_CANNOT_EXCEED_ON_HAND", "onHand")


async def test_adjusting_stock_below_zero_is_refused(shop: Shop) -> None:
    product_id = await shop.product()

    error = await shop.refused(c.AdjustStock(product_id=product_id, on_hand=-1))

    assert (error.code, error.field) == ("STOCK_CANNOT_GO_NEGATIVE", "onHand")


async def test_adjusting_stock_of_an_unknown_product_is_not_found(shop: Shop) -> None:
    error = await shop.refused(c.AdjustStock(product_id="nope", on_hand=1))

    assert isinstance(error, NotFound)
    assert error.field == "productId"


# --- registerCustomer ---


async def test_registering_a_customer_stores_the_email_lower_cased(
    shop: Shop, store: FakeStore
) -> None:
    outcome = await shop.run(c.RegisterCustomer(email=" Ada@Example.COM ", name=" Ada "))

    assert outcome.kind == "Customer"
    assert outcome.snapshot == {
        "id": "id-1",
        "version": 1,
        "email": "ada@example.com",
        "name": "Ada",
        "erased": False,
    }
    assert store.customers["id-1"].email == "ada@example.com"
    assert store.event_types() == ["CustomerRegistered"]
    assert store.outbox[0].payload == {"email": "ada@example.com", "name": "Ada"}


async def test_registering_a_taken_email_is_refused_whatever_its_case(shop: Shop) -> None:
    await shop.customer("ada@example.com")

    error = await shop.refused(c.RegisterCustomer(email="ADA@example.com", name="Other"))

    assert isinstance(error, AlreadyExists)
    assert (error.code, error.field) == ("EMAIL_TAKEN", "email")


@pytest.mark.parametrize("email", ["not-an-email", "a@b", "a b@example.com", ""])
async def test_registering_a_malformed_email_is_refused(shop: Shop, email: str) -> None:
    error = await shop.refused(c.RegisterCustomer(email=email, name="Ada"))

    assert isinstance(error, InvalidInput)
    assert (error.code, error.field) == ("EMAIL_MALFORMED", "email")


async def test_registering_without_a_name_is_refused(shop: Shop) -> None:
    error = await shop.refused(c.RegisterCustomer(email="ada@example.com", name=" "))

    assert (error.code, error.field) == ("TEXT_OUT_OF_BOUNDS", "name")


async def test_an_erased_customers_email_can_be_registered_again(
    shop: Shop, store: FakeStore
) -> None:
    first = await shop.customer("ada@example.com")
    await shop.run(c.EraseCustomer(customer_id=first))

    outcome = await shop.run(c.RegisterCustomer(email="ada@example.com", name="Ada again"))

    assert outcome.snapshot["id"] != first
    assert store.customers[first].email is None


# --- eraseCustomer ---


async def test_erasing_a_customer_removes_their_personal_data(shop: Shop, store: FakeStore) -> None:
    customer_id = await shop.customer()

    outcome = await shop.run(c.EraseCustomer(customer_id=customer_id, expected_version=1))

    assert outcome.snapshot == {
        "id": customer_id,
        "version": 2,
        "email": None,
        "name": None,
        "erased": True,
    }
    stored = store.customers[customer_id]
    assert (stored.email, stored.name, stored.erased) == (None, None, True)
    assert store.outbox[-1].event_type == "CustomerErased"
    assert store.outbox[-1].payload == {}


async def test_erasing_a_customer_twice_records_it_once(shop: Shop, store: FakeStore) -> None:
    customer_id = await shop.customer()
    await shop.run(c.EraseCustomer(customer_id=customer_id))

    await shop.run(c.EraseCustomer(customer_id=customer_id))

    assert store.event_types().count("CustomerErased") == 1


async def test_erasing_an_unknown_customer_is_not_found_on_customer_id(shop: Shop) -> None:
    error = await shop.refused(c.EraseCustomer(customer_id="nope"))

    assert isinstance(error, NotFound)
    assert error.field == "customerId"


# --- placeOrder ---


async def test_placing_an_order_reserves_stock_and_captures_prices(
    shop: Shop, store: FakeStore, clock: FakeClock
) -> None:
    kettle = await shop.product("KETTLE", price=2500, stock=5)
    mug = await shop.product("MUG", price=400, stock=10)
    customer_id = await shop.customer()
    since = store.head

    outcome = await shop.run(
        c.PlaceOrder(
            customer_id=customer_id,
            lines=(
                c.OrderLineRequest(sku="kettle", quantity=2),
                c.OrderLineRequest(sku="MUG", quantity=3),
            ),
        )
    )

    order_id = outcome.snapshot["id"]
    assert outcome.kind == "Order"
    assert outcome.snapshot == {
        "id": order_id,
        "version": 1,
        "customer_id": customer_id,
        "status": "placed",
        "currency": "EUR",
        "total": 2 * 2500 + 3 * 400,
        "lines": [
            {"product_id": kettle, "sku": "KETTLE", "quantity": 2, "unit_price": 2500},
            {"product_id": mug, "sku": "MUG", "quantity": 3, "unit_price": 400},
        ],
        "placed_at": clock.now.isoformat(),
        "paid_at": None,
        "shipped_at": None,
        "cancelled_at": None,
    }
    assert (store.stocks[kettle].reserved, store.stocks[mug].reserved) == (2, 3)
    assert (store.stocks[kettle].on_hand, store.stocks[mug].on_hand) == (5, 10)
    assert sorted(new_events(store, since)) == sorted(
        [("StockReserved", kettle), ("StockReserved", mug), ("OrderPlaced", order_id)]
    )
    assert store.orders[order_id].total == 6200
    assert outcome.position == store.head


async def test_a_later_price_change_does_not_change_a_placed_order(
    shop: Shop, store: FakeStore
) -> None:
    product_id = await shop.product("A", price=1000)
    order_id = await shop.order(await shop.customer(), ("A", 1))

    await shop.run(c.ChangePrice(product_id=product_id, price=9999))

    assert store.orders[order_id].lines[0].unit_price == 1000
    assert store.orders[order_id].total == 1000


async def test_ordering_for_an_unknown_customer_is_not_found_on_customer_id(shop: Shop) -> None:
    await shop.product("A")

    error = await shop.refused(
        c.PlaceOrder(customer_id="nope", lines=(c.OrderLineRequest(sku="A", quantity=1),))
    )

    assert isinstance(error, NotFound)
    assert error.field == "customerId"


async def test_ordering_an_unknown_sku_is_not_found_on_that_line(shop: Shop) -> None:
    await shop.product("A")
    customer_id = await shop.customer()

    error = await shop.refused(
        c.PlaceOrder(
            customer_id=customer_id,
            lines=(c.OrderLineRequest("A", 1), c.OrderLineRequest("MISSING", 1)),
        )
    )

    assert isinstance(error, NotFound)
    assert error.field == "lines.1.sku"


@pytest.mark.parametrize("inactive", ["draft", "discontinued"])
async def test_an_inactive_product_cannot_be_ordered(shop: Shop, inactive: str) -> None:
    product_id = await shop.product("A", status="draft")
    if inactive == "discontinued":
        await shop.run(c.DiscontinueProduct(product_id=product_id))
    customer_id = await shop.customer()

    error = await shop.refused(
        c.PlaceOrder(customer_id=customer_id, lines=(c.OrderLineRequest("A", 1),))
    )

    assert isinstance(error, RuleBroken)
    assert (error.code, error.field) == ("PRODUCT_NOT_ORDERABLE", "lines.0.sku")


async def test_ordering_more_than_is_available_is_refused_and_reserves_nothing(
    shop: Shop, store: FakeStore
) -> None:
    a = await shop.product("A", stock=5)
    await shop.product("B", stock=2)
    customer_id = await shop.customer()

    error = await shop.refused(
        c.PlaceOrder(
            customer_id=customer_id,
            lines=(c.OrderLineRequest("A", 5), c.OrderLineRequest("B", 3)),
        )
    )

    assert (error.code, error.field) == ("INSUFFICIENT_STOCK", "lines.1.quantity")
    assert store.stocks[a].reserved == 0  # the first line's reservation did not survive


async def test_stock_held_by_an_earlier_order_is_not_available_to_the_next(shop: Shop) -> None:
    await shop.product("A", stock=5)
    customer_id = await shop.customer()
    await shop.order(customer_id, ("A", 4))

    error = await shop.refused(
        c.PlaceOrder(customer_id=customer_id, lines=(c.OrderLineRequest("A", 2),))
    )

    assert (error.code, error.field) == ("INSUFFICIENT_STOCK", "lines.0.quantity")


async def test_one_sku_on_two_lines_is_refused_on_the_second_line(shop: Shop) -> None:
    await shop.product("A", stock=5)
    customer_id = await shop.customer()

    error = await shop.refused(
        c.PlaceOrder(
            customer_id=customer_id,
            lines=(c.OrderLineRequest("A", 1), c.OrderLineRequest(" a ", 1)),
        )
    )

    assert isinstance(error, InvalidInput)
    assert error.field == "lines.1.sku"


async def test_an_erased_customer_cannot_order(shop: Shop) -> None:
    await shop.product("A")
    customer_id = await shop.customer()
    await shop.run(c.EraseCustomer(customer_id=customer_id))

    error = await shop.refused(
        c.PlaceOrder(customer_id=customer_id, lines=(c.OrderLineRequest("A", 1),))
    )

    assert isinstance(error, RuleBroken)
    assert (error.code, error.field) == ("CUSTOMER_ERASED", "customerId")


@pytest.mark.parametrize("count", [0, MAX_ORDER_LINES + 1])
async def test_an_order_has_one_to_a_hundred_lines(shop: Shop, count: int) -> None:
    customer_id = await shop.customer()
    lines = tuple(c.OrderLineRequest(f"S{i}", 1) for i in range(count))

    error = await shop.refused(c.PlaceOrder(customer_id=customer_id, lines=lines))

    assert (error.code, error.field) == ("ORDER_LINES_OUT_OF_BOUNDS", "lines")


async def test_an_order_cannot_mix_currencies(shop: Shop) -> None:
    await shop.product("A", currency="EUR")
    await shop.product("B", currency="USD")
    customer_id = await shop.customer()

    error = await shop.refused(
        c.PlaceOrder(
            customer_id=customer_id,
            lines=(c.OrderLineRequest("A", 1), c.OrderLineRequest("B", 1)),
        )
    )

    assert (error.code, error.field) == ("MIXED_CURRENCIES", "lines")


@pytest.mark.parametrize(
    ("line", "code", "field"),
    [
        (c.OrderLineRequest("A", 0), "QUANTITY_NOT_POSITIVE", "lines.0.quantity"),
        (c.OrderLineRequest("A", -2), "QUANTITY_NOT_POSITIVE", "lines.0.quantity"),
        (c.OrderLineRequest("not a sku", 1), "SKU_MALFORMED", "lines.0.sku"),
        (c.OrderLineRequest("A", 2_147_483_647), "QUANTITY_TOO_LARGE", "lines.0.quantity"),
    ],
)
async def test_a_bad_order_line_is_refused_naming_its_field(
    shop: Shop, line: c.OrderLineRequest, code: str, field: str
) -> None:
    await shop.product("A")
    customer_id = await shop.customer()

    error = await shop.refused(c.PlaceOrder(customer_id=customer_id, lines=(line,)))

    assert (error.code, error.field) == (code, field)


async def test_a_sku_on_two_lines_is_refused_as_a_duplicate_naming_the_second(
    shop: Shop,
) -> None:
    await shop.product("A")
    customer_id = await shop.customer()

    error = await shop.refused(
        c.PlaceOrder(
            customer_id=customer_id,
            lines=(c.OrderLineRequest("A", 1), c.OrderLineRequest(" a ", 2)),
        )
    )

    assert (error.code, error.field) == ("DUPLICATE_SKU", "lines.1.sku")


# --- payOrder, shipOrder, cancelOrder ---


@pytest.fixture
async def placed(shop: Shop) -> dict[str, str]:
    """An order of 3 of product A (10 on hand), placed."""
    product_id = await shop.product("A", stock=10)
    order_id = await shop.order(await shop.customer(), ("A", 3))
    return {"order": order_id, "product": product_id}


async def test_paying_an_order_records_when(
    shop: Shop, store: FakeStore, clock: FakeClock, placed: dict[str, str]
) -> None:
    clock.advance(timedelta(minutes=5))

    outcome = await shop.run(c.PayOrder(order_id=placed["order"], expected_version=1))

    assert outcome.snapshot["status"] == "paid"
    assert outcome.snapshot["paid_at"] == clock.now.isoformat()
    assert store.orders[placed["order"]].paid_at == clock.now
    assert store.outbox[-1].event_type == "OrderPaid"


async def test_shipping_a_paid_order_takes_its_units_out_of_stock(
    shop: Shop, store: FakeStore, placed: dict[str, str]
) -> None:
    await shop.run(c.PayOrder(order_id=placed["order"]))
    since = store.head

    outcome = await shop.run(c.ShipOrder(order_id=placed["order"]))

    assert outcome.snapshot["status"] == "shipped"
    item = store.stocks[placed["product"]]
    assert (item.on_hand, item.reserved, item.units_sold) == (7, 0, 3)
    assert sorted(new_events(store, since)) == [
        ("OrderShipped", placed["order"]),
        ("StockCommitted", placed["product"]),
    ]


@pytest.mark.parametrize("paid_first", [False, True])
async def test_cancelling_an_order_releases_its_stock(
    shop: Shop, store: FakeStore, placed: dict[str, str], paid_first: bool
) -> None:
    if paid_first:
        await shop.run(c.PayOrder(order_id=placed["order"]))
    since = store.head

    outcome = await shop.run(c.CancelOrder(order_id=placed["order"], reason="changed my mind"))

    assert outcome.snapshot["status"] == "cancelled"
    item = store.stocks[placed["product"]]
    assert (item.on_hand, item.reserved) == (10, 0)
    assert sorted(new_events(store, since)) == [
        ("OrderCancelled", placed["order"]),
        ("StockReleased", placed["product"]),
    ]
    cancelled = next(e for e in store.outbox if e.event_type == "OrderCancelled")
    assert cancelled.payload == {"reason": "changed my mind"}


@pytest.mark.parametrize(
    ("before", "command"),
    [
        ([], c.ShipOrder),
        ([c.PayOrder], c.PayOrder),
        ([c.PayOrder, c.ShipOrder], c.CancelOrder),
        ([c.PayOrder, c.ShipOrder], c.PayOrder),
        ([c.CancelOrder], c.PayOrder),
        ([c.CancelOrder], c.ShipOrder),
        ([c.CancelOrder], c.CancelOrder),
    ],
    ids=[
        "ship-placed",
        "pay-paid",
        "cancel-shipped",
        "pay-shipped",
        "pay-cancelled",
        "ship-cancelled",
        "cancel-cancelled",
    ],
)
async def test_an_order_refuses_an_illegal_status_transition(
    shop: Shop, placed: dict[str, str], before: list[type[c.Command]], command: type[c.Command]
) -> None:
    for step in before:
        await shop.run(step(order_id=placed["order"]))  # type: ignore[call-arg]

    error = await shop.refused(command(order_id=placed["order"]))  # type: ignore[call-arg]

    assert isinstance(error, RuleBroken)
    assert (error.code, error.field) == ("ILLEGAL_STATUS_TRANSITION", "orderId")


@pytest.mark.parametrize("command", [c.PayOrder, c.ShipOrder, c.CancelOrder])
async def test_an_unknown_order_is_not_found_on_order_id(
    shop: Shop, command: type[c.Command]
) -> None:
    error = await shop.refused(command(order_id="nope"))  # type: ignore[call-arg]

    assert isinstance(error, NotFound)
    assert error.field == "orderId"


@pytest.mark.parametrize("command", [c.PayOrder, c.ShipOrder, c.CancelOrder])
async def test_an_order_command_at_another_version_is_a_conflict(
    shop: Shop, placed: dict[str, str], command: type[c.Command]
) -> None:
    error = await shop.refused(
        command(order_id=placed["order"], expected_version=2)  # type: ignore[call-arg]
    )

    assert isinstance(error, ConcurrencyConflict)
    assert (error.expected, error.actual) == (2, 1)


# --- every string of every command ---


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


async def _one_of_each(shop: Shop) -> dict[type[c.Command], c.Command]:
    """A command of every kind that would succeed, every string in it set."""
    product = await shop.product("TXT-1", stock=50)
    customer = await shop.customer("txt@example.com")
    order = await shop.order(customer, ("TXT-1", 1))
    line = c.OrderLineRequest(sku="TXT-1", quantity=1)
    return {
        c.CreateProduct: c.CreateProduct(
            sku="TXT-2",
            name="Mug",
            price=1,
            currency="EUR",
            description="A mug",
            category="kitchen",
            tags=("mug",),
        ),
        c.UpdateProduct: c.UpdateProduct(
            product_id=product,
            name="Mug",
            description="A mug",
            category="kitchen",
            tags=("mug",),
            status="active",
        ),
        c.ChangePrice: c.ChangePrice(product_id=product, price=5, currency="EUR"),
        c.DiscontinueProduct: c.DiscontinueProduct(product_id=product),
        c.ReceiveStock: c.ReceiveStock(product_id=product, quantity=1),
        c.AdjustStock: c.AdjustStock(product_id=product, on_hand=20, reason="stocktake"),
        c.RegisterCustomer: c.RegisterCustomer(email="new@example.com", name="New"),
        c.EraseCustomer: c.EraseCustomer(customer_id=customer),
        c.PlaceOrder: c.PlaceOrder(customer_id=customer, lines=(line,)),
        c.PayOrder: c.PayOrder(order_id=order),
        c.ShipOrder: c.ShipOrder(order_id=order),
        c.CancelOrder: c.CancelOrder(order_id=order, reason="changed my mind"),
    }


def _each_string_replaced(command: c.Command, value: str) -> list[tuple[str, c.Command]]:
    """The command once per string it carries, that string replaced by `value`,
    with the input field's name as the client writes it."""
    variants: list[tuple[str, c.Command]] = []
    hints = get_type_hints(type(command))
    for spec in dataclasses.fields(command):
        current = getattr(command, spec.name)
        if spec.name == "lines":
            first = dataclasses.replace(current[0], sku=value)
            variants.append(("lines.0.sku", dataclasses.replace(command, lines=(first,))))
        elif spec.name == "tags":
            variants.append(("tags.0", dataclasses.replace(command, tags=(value,))))
        elif "str" in str(hints[spec.name]):
            variants.append((_camel(spec.name), dataclasses.replace(command, **{spec.name: value})))
    return variants


HOSTILE_TEXT = {
    "nul": "a\x00b",
    "record-separator": "a\x1eb",
    "unit-separator": "a\x1fb",
    "noncharacter": "a\uffffb",
    "lone-surrogate": "a\ud800b",
    "c1-control": "a\x85b",
}


async def test_there_is_one_of_each_command_to_poison(shop: Shop) -> None:
    from writemodel.handlers import HANDLERS

    assert set(await _one_of_each(shop)) == set(HANDLERS)


@pytest.mark.parametrize("value", HOSTILE_TEXT.values(), ids=HOSTILE_TEXT.keys())
async def test_a_hostile_character_in_any_string_of_any_command_is_refused_naming_its_field(
    shop: Shop, value: str
) -> None:
    commands = await _one_of_each(shop)
    checked = 0
    for command in commands.values():
        for field, poisoned in _each_string_replaced(command, value):
            error = await shop.refused(poisoned)
            assert isinstance(error, InvalidInput), (field, error)
            assert (error.code, error.field) == ("TEXT_INVALID_CHARACTERS", field)
            checked += 1
    assert checked == 28  # every string field of the twelve commands, status included


async def test_a_hundred_kilobytes_in_any_string_of_any_command_is_refused_naming_its_field(
    shop: Shop,
) -> None:
    commands = await _one_of_each(shop)
    for command in commands.values():
        for field, poisoned in _each_string_replaced(command, "x" * 100_000):
            error = await shop.refused(poisoned)
            assert isinstance(error, InvalidInput), (field, error)
            assert error.field == field


@pytest.mark.parametrize(
    ("command", "field"),
    [
        (c.UpdateProduct(product_id="x" * 37, name="N"), "productId"),
        (c.ReceiveStock(product_id="id 1", quantity=1), "productId"),
        (c.EraseCustomer(customer_id="../1"), "customerId"),
        (c.PlaceOrder(customer_id="\U0001f389", lines=(c.OrderLineRequest("A", 1),)), "customerId"),
        (c.CancelOrder(order_id=""), "orderId"),
    ],
)
async def test_an_id_that_could_not_have_been_made_is_refused_before_any_lookup(
    shop: Shop, command: c.Command, field: str
) -> None:
    error = await shop.refused(command)

    assert (error.code, error.field) == ("ID_MALFORMED", field)


# --- amounts the API could not send back ---


async def test_an_order_whose_total_overflows_an_int_is_refused_and_reserves_nothing(
    shop: Shop, store: FakeStore
) -> None:
    product = await shop.product("BIG-1", price=MAX_PRICE, stock=2)
    customer = await shop.customer()

    error = await shop.refused(
        c.PlaceOrder(customer_id=customer, lines=(c.OrderLineRequest("BIG-1", 2),))
    )

    assert isinstance(error, RuleBroken)
    assert (error.code, error.field) == ("ORDER_TOTAL_TOO_LARGE", "lines")
    assert store.stocks[product].reserved == 0


async def test_stock_cannot_be_received_past_its_bound(shop: Shop, store: FakeStore) -> None:
    product = await shop.product("LOTS-1", stock=MAX_QUANTITY)
    store.stocks[product].on_hand = MAX_STOCK - 1

    error = await shop.refused(c.ReceiveStock(product_id=product, quantity=2))

    assert (error.code, error.field) == ("STOCK_LIMIT_EXCEEDED", "quantity")


async def test_initial_stock_out_of_range_names_initial_stock(shop: Shop) -> None:
    error = await shop.refused(
        c.CreateProduct(
            sku="A-1", name="A", price=1, currency="EUR", initial_stock=MAX_QUANTITY + 1
        )
    )

    assert (error.code, error.field) == ("QUANTITY_TOO_LARGE", "initialStock")


# --- who may change what (writemodel/access.py) ---

STAFF = Actor("staff", subject="staff-1", issuer="tests")
ADMIN = Actor("admin", subject="admin-1", issuer="tests")
NOBODY = Actor("anonymous")


def as_customer(customer_id: str | None, subject: str = "ada") -> Actor:
    return Actor("customer", subject=subject, issuer="tests", customer_id=customer_id)


# One command of each kind, aimed at ids that need not exist: the role check
# comes before any lookup.
ONE_OF_EACH: list[c.Command] = [
    c.CreateProduct(sku="X-1", name="X", price=1, currency="EUR"),
    c.UpdateProduct(product_id="p", name="Y"),
    c.ChangePrice(product_id="p", price=2),
    c.DiscontinueProduct(product_id="p"),
    c.ReceiveStock(product_id="p", quantity=1),
    c.AdjustStock(product_id="p", on_hand=1, reason="count"),
    c.RegisterCustomer(email="x@example.com", name="X"),
    c.EraseCustomer(customer_id="cu"),
    c.PlaceOrder(customer_id="cu", lines=(c.OrderLineRequest("X-1", 1),)),
    c.PayOrder(order_id="o"),
    c.ShipOrder(order_id="o"),
    c.CancelOrder(order_id="o"),
]
STAFF_ONLY = [
    cmd
    for cmd in ONE_OF_EACH
    if not isinstance(cmd, c.RegisterCustomer | c.EraseCustomer | c.PlaceOrder | c.CancelOrder)
]


def _name(command: c.Command) -> str:
    return type(command).__name__


def test_every_command_has_an_entry_in_the_access_table() -> None:
    assert set(MAY_SEND) == set(HANDLERS) == {type(cmd) for cmd in ONE_OF_EACH}


@pytest.mark.parametrize("command", ONE_OF_EACH, ids=_name)
@pytest.mark.parametrize("actor", [NOBODY, Actor("superuser", subject="eve"), Actor("")], ids=repr)
async def test_an_anonymous_caller_or_an_unknown_role_may_send_no_command(
    shop: Shop, command: c.Command, actor: Actor
) -> None:
    error = await shop.refused(command, actor)

    assert isinstance(error, Forbidden)
    assert error.code == "FORBIDDEN"


@pytest.mark.parametrize("command", STAFF_ONLY, ids=_name)
async def test_a_customer_may_not_change_the_catalog_stock_or_pay_and_ship(
    shop: Shop, command: c.Command
) -> None:
    error = await shop.refused(command, as_customer("cu"))

    assert error.code == "FORBIDDEN"


async def test_a_command_with_no_entry_in_the_table_is_refused() -> None:
    @dataclasses.dataclass(frozen=True)
    class Unlisted(c.Command):
        pass

    with pytest.raises(Forbidden):
        may_send(SYSTEM, Unlisted())


async def test_a_customer_places_an_order_for_themself(shop: Shop, store: FakeStore) -> None:
    await shop.product("MUG-1")
    ada = await shop.customer()

    outcome = await shop.run(
        c.PlaceOrder(customer_id=ada, lines=(c.OrderLineRequest("MUG-1", 1),)), as_customer(ada)
    )

    assert outcome.snapshot["customer_id"] == ada


async def test_a_customer_may_not_place_an_order_for_another(shop: Shop, store: FakeStore) -> None:
    product = await shop.product("MUG-1")
    ada = await shop.customer()
    bob = await shop.customer("bob@example.com")

    error = await shop.refused(
        c.PlaceOrder(customer_id=ada, lines=(c.OrderLineRequest("MUG-1", 1),)), as_customer(bob)
    )

    assert isinstance(error, Forbidden)
    assert error.field == "customerId"
    assert store.stocks[product].reserved == 0


async def test_staff_place_an_order_for_any_customer(shop: Shop) -> None:
    await shop.product("MUG-1")
    ada = await shop.customer()

    outcome = await shop.run(
        c.PlaceOrder(customer_id=ada, lines=(c.OrderLineRequest("MUG-1", 1),)), STAFF
    )

    assert outcome.snapshot["customer_id"] == ada


async def test_a_customer_cancels_their_own_unpaid_order_and_its_stock_is_released(
    shop: Shop, store: FakeStore
) -> None:
    product = await shop.product("MUG-1")
    ada = await shop.customer()
    order = await shop.order(ada, ("MUG-1", 2))

    outcome = await shop.run(c.CancelOrder(order_id=order), as_customer(ada))

    assert outcome.snapshot["status"] == "cancelled"
    assert store.stocks[product].reserved == 0


async def test_a_customer_may_not_cancel_another_customers_order(shop: Shop) -> None:
    await shop.product("MUG-1")
    ada = await shop.customer()
    bob = await shop.customer("bob@example.com")
    order = await shop.order(ada, ("MUG-1", 1))

    error = await shop.refused(c.CancelOrder(order_id=order), as_customer(bob))

    assert isinstance(error, Forbidden)
    assert error.field == "orderId"


async def test_a_customer_hears_forbidden_for_an_order_that_does_not_exist_so_ids_cannot_be_probed(
    shop: Shop,
) -> None:
    ada = await shop.customer()

    missing = await shop.refused(c.CancelOrder(order_id="no-such-order"), as_customer(ada))
    staff_missing = await shop.refused(c.CancelOrder(order_id="no-such-order"), STAFF)

    assert (missing.code, missing.field) == ("FORBIDDEN", "orderId")
    assert isinstance(staff_missing, NotFound)


@pytest.mark.parametrize("paid", ["pay", "pay and ship"])
async def test_a_customer_may_not_cancel_their_own_paid_order_but_staff_may(
    shop: Shop, paid: str
) -> None:
    await shop.product("MUG-1")
    ada = await shop.customer()
    order = await shop.order(ada, ("MUG-1", 1))
    await shop.run(c.PayOrder(order_id=order), STAFF)
    if paid == "pay and ship":
        await shop.run(c.ShipOrder(order_id=order), STAFF)

    error = await shop.refused(c.CancelOrder(order_id=order), as_customer(ada))

    assert (error.code, error.field) == ("FORBIDDEN", "orderId")
    if paid == "pay":
        outcome = await shop.run(c.CancelOrder(order_id=order), STAFF)
        assert outcome.snapshot["status"] == "cancelled"


async def test_a_customer_erases_themself_and_the_erasure_names_them_in_the_audit(
    shop: Shop, store: FakeStore
) -> None:
    ada = await shop.customer()

    outcome = await shop.run(c.EraseCustomer(customer_id=ada), as_customer(ada, "ada-sub"))

    assert outcome.snapshot["email"] is None
    erased = store.outbox[-1]
    assert (erased.event_type, erased.aggregate_id) == ("CustomerErased", ada)
    assert (erased.actor_role, erased.actor_subject) == ("customer", "ada-sub")
    # The fact of each event stays; the registration's email and name do not.
    mine = [(e.event_type, e.payload) for e in store.outbox if e.aggregate_id == ada]
    assert mine == [("CustomerRegistered", {}), ("CustomerErased", {})]


async def test_a_customer_may_not_erase_another(shop: Shop, store: FakeStore) -> None:
    ada = await shop.customer()
    bob = await shop.customer("bob@example.com")

    error = await shop.refused(c.EraseCustomer(customer_id=ada), as_customer(bob))

    assert (error.code, error.field) == ("FORBIDDEN", "customerId")
    assert store.customers[ada].erased is False


async def test_staff_may_not_erase_a_customer_but_an_admin_may(
    shop: Shop, store: FakeStore
) -> None:
    ada = await shop.customer()

    error = await shop.refused(c.EraseCustomer(customer_id=ada), STAFF)
    await shop.run(c.EraseCustomer(customer_id=ada), ADMIN)

    assert error.code == "FORBIDDEN"
    assert store.customers[ada].erased is True


async def test_a_customer_registers_under_the_id_their_token_carries(
    shop: Shop, store: FakeStore
) -> None:
    outcome = await shop.run(
        c.RegisterCustomer(email="ada@example.com", name="Ada"), as_customer("ada-id")
    )

    assert outcome.snapshot["id"] == "ada-id"
    assert store.customers["ada-id"].email == "ada@example.com"


async def test_a_customer_registers_once_whatever_email_they_send_again(
    shop: Shop, store: FakeStore
) -> None:
    await shop.run(c.RegisterCustomer(email="ada@example.com", name="Ada"), as_customer("ada-id"))

    error = await shop.refused(
        c.RegisterCustomer(email="other@example.com", name="Ada"), as_customer("ada-id")
    )

    assert isinstance(error, AlreadyExists)
    assert error.code == "ALREADY_REGISTERED"
    assert len(store.customers) == 1


async def test_a_customer_whose_token_names_no_customer_cannot_register(shop: Shop) -> None:
    error = await shop.refused(
        c.RegisterCustomer(email="ada@example.com", name="Ada"), as_customer(None)
    )

    assert error.code == "FORBIDDEN"


async def test_staff_register_anyone_under_a_new_id(shop: Shop) -> None:
    first = await shop.run(c.RegisterCustomer(email="a@example.com", name="A"), STAFF)
    second = await shop.run(c.RegisterCustomer(email="b@example.com", name="B"), STAFF)

    assert first.snapshot["id"] != second.snapshot["id"]


@pytest.mark.parametrize("actor", [STAFF, ADMIN, SYSTEM], ids=repr)
async def test_every_event_of_a_command_is_stored_with_its_actor(
    shop: Shop, store: FakeStore, actor: Actor
) -> None:
    product = await shop.product("MUG-1")
    since = store.head

    await shop.run(c.ChangePrice(product_id=product, price=1234), actor)

    changed = [e for e in store.outbox if e.position > since]
    assert [e.event_type for e in changed] == ["PriceChanged"]
    assert {(e.actor_role, e.actor_subject) for e in changed} == {(actor.role, actor.subject)}
