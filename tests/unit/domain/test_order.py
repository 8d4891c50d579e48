"""Order: placing, totals, the status machine, and optimistic concurrency."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import pytest

from domain.aggregate import Aggregate
from domain.customer import Customer
from domain.errors import ConcurrencyConflict, DomainError
from domain.events import Event, OrderCancelled, OrderPaid, OrderPlaced, OrderShipped
from domain.order import IllegalStatusTransition, Order, OrderLine, OrderStatus
from domain.product import Product
from domain.rules import (
    MAX_ORDER_LINES,
    OrderLinesMustShareCurrency,
    OrderMustHaveLines,
    QuantityMustBePositive,
    QuantityMustFit,
    TextMustFit,
)
from domain.stock import Stock

Status = OrderStatus


def line(n: int = 1, quantity: int = 1, unit_price: int = 100) -> OrderLine:
    return OrderLine(product_id=f"p{n}", sku=f"SKU-{n}", quantity=quantity, unit_price=unit_price)


def place(
    now: datetime,
    lines: list[OrderLine] | None = None,
    currencies: set[str] | None = None,
) -> Order:
    return Order.place(
        "o1",
        customer_id="c1",
        lines=[line()] if lines is None else lines,
        currencies={"EUR"} if currencies is None else currencies,
        now=now,
    )


def state(order: Order) -> tuple[object, ...]:
    return (
        order.status,
        order.version,
        len(order.pending),
        order.paid_at,
        order.shipped_at,
        order.cancelled_at,
    )


# --- placing ----------------------------------------------------------------------------


def test_placing_an_order_records_order_placed_at_version_1(now: datetime) -> None:
    order = place(now, [line(1, quantity=2, unit_price=150), line(2, quantity=1, unit_price=99)])

    assert order.status is Status.PLACED
    assert order.placed_at == now
    assert (order.customer_id, order.currency, order.total) == ("c1", "EUR", 399)
    assert order.version == 1
    assert order.pending == [
        (
            1,
            OrderPlaced(
                "o1",
                customer_id="c1",
                lines=[
                    {"product_id": "p1", "sku": "SKU-1", "quantity": 2, "unit_price": 150},
                    {"product_id": "p2", "sku": "SKU-2", "quantity": 1, "unit_price": 99},
                ],
                total=399,
                currency="EUR",
            ),
        )
    ]


def test_a_placed_order_has_no_payment_shipment_or_cancellation_time(now: datetime) -> None:
    order = place(now)

    assert (order.paid_at, order.shipped_at, order.cancelled_at) == (None, None, None)


def test_a_line_amount_is_quantity_times_unit_price() -> None:
    assert line(quantity=7, unit_price=1250).amount == 8750


def test_the_total_is_the_sum_of_the_line_amounts(now: datetime) -> None:
    lines = [line(n, quantity=n, unit_price=10 * n) for n in range(1, 6)]

    order = place(now, lines)

    assert order.total == sum(n * 10 * n for n in range(1, 6)) == 550


def test_an_order_of_zero_lines_is_rejected(now: datetime) -> None:
    with pytest.raises(OrderMustHaveLines) as raised:
        place(now, [])

    assert raised.value.code == "ORDER_LINES_OUT_OF_BOUNDS"
    assert raised.value.field == "lines"


def test_an_order_of_a_hundred_and_one_lines_is_rejected(now: datetime) -> None:
    lines = [line(n) for n in range(MAX_ORDER_LINES + 1)]

    with pytest.raises(OrderMustHaveLines) as raised:
        place(now, lines)

    assert raised.value.code == "ORDER_LINES_OUT_OF_BOUNDS"
    assert raised.value.field == "lines"


def test_an_order_of_a_hundred_lines_is_accepted(now: datetime) -> None:
    lines = [line(n, unit_price=n + 1) for n in range(MAX_ORDER_LINES)]

    order = place(now, lines)

    assert len(order.lines) == MAX_ORDER_LINES == 100
    assert order.total == sum(range(1, 101))


def test_an_order_mixing_currencies_is_rejected(now: datetime) -> None:
    with pytest.raises(OrderLinesMustShareCurrency) as raised:
        place(now, [line(1), line(2)], currencies={"EUR", "USD"})

    assert raised.value.code == "MIXED_CURRENCIES"
    assert raised.value.field == "lines"


@pytest.mark.parametrize(
    ("quantity", "code"),
    [
        (0, "QUANTITY_NOT_POSITIVE"),
        (-1, "QUANTITY_NOT_POSITIVE"),
        (1_000_001, "QUANTITY_TOO_LARGE"),
        (2_147_483_647, "QUANTITY_TOO_LARGE"),
    ],
)
def test_a_line_quantity_outside_one_to_a_million_is_rejected_naming_its_line(
    now: datetime, quantity: int, code: str
) -> None:
    with pytest.raises((QuantityMustBePositive, QuantityMustFit)) as raised:
        place(now, [line(1), line(2, quantity=quantity)])

    assert raised.value.code == code
    assert raised.value.field == "lines.1.quantity"


def test_an_order_keeps_the_unit_prices_of_the_moment_it_was_placed(now: datetime) -> None:
    mug = Product.create("p1", sku="MUG-1", name="Mug", price=1250, currency="EUR", now=now)
    order = place(
        now,
        [OrderLine(product_id=mug.id, sku=mug.sku, quantity=2, unit_price=mug.price)],
        currencies={mug.currency},
    )

    mug.change_price(1999)

    assert order.lines[0].unit_price == 1250
    assert order.total == 2500
    placed = order.pending[0][1]
    assert isinstance(placed, OrderPlaced)
    assert placed.lines[0]["unit_price"] == 1250
    assert placed.total == 2500


def test_changing_the_callers_list_after_placing_does_not_change_the_order(
    now: datetime,
) -> None:
    lines = [line(1, unit_price=100)]
    order = place(now, lines)

    lines.append(line(2, unit_price=900))

    assert order.lines == [line(1, unit_price=100)]
    assert order.total == 100


def test_order_lines_are_immutable_values() -> None:
    with pytest.raises(AttributeError):
        line().unit_price = 1  # type: ignore[misc]


def test_placing_lines_without_a_currency_is_refused_with_a_domain_error(now: datetime) -> None:
    with pytest.raises(DomainError):
        place(now, [line()], currencies=set())


# --- status transitions -----------------------------------------------------------------

Action = Callable[[Order, datetime], None]

ACTIONS: dict[str, tuple[Action, Status, type[Event], str]] = {
    "pay": (lambda o, t: o.pay(t), Status.PAID, OrderPaid, "paid_at"),
    "ship": (lambda o, t: o.ship(t), Status.SHIPPED, OrderShipped, "shipped_at"),
    "cancel": (lambda o, t: o.cancel(t), Status.CANCELLED, OrderCancelled, "cancelled_at"),
}

# How to reach each status from placed, through legal moves only.
PATH_TO: dict[Status, list[str]] = {
    Status.PLACED: [],
    Status.PAID: ["pay"],
    Status.SHIPPED: ["pay", "ship"],
    Status.CANCELLED: ["cancel"],
}

LEGAL = {
    (Status.PLACED, "pay"),
    (Status.PLACED, "cancel"),
    (Status.PAID, "ship"),
    (Status.PAID, "cancel"),
}
ALL_PAIRS = [(status, action) for status in Status for action in ACTIONS]
LEGAL_PAIRS = [pair for pair in ALL_PAIRS if pair in LEGAL]
ILLEGAL_PAIRS = [pair for pair in ALL_PAIRS if pair not in LEGAL]


def order_in(status: Status, now: datetime) -> Order:
    order = place(now)
    for name in PATH_TO[status]:
        ACTIONS[name][0](order, now)
    assert order.status is status
    return order


def pair_id(pair: tuple[Status, str]) -> str:
    return f"{pair[0].value}-{pair[1]}"


def test_the_transition_table_covers_every_status_and_action() -> None:
    assert len(ALL_PAIRS) == len(LEGAL_PAIRS) + len(ILLEGAL_PAIRS) == 12
    assert len(LEGAL_PAIRS) == 4


@pytest.mark.parametrize(("start", "action"), LEGAL_PAIRS, ids=map(pair_id, LEGAL_PAIRS))
def test_a_legal_transition_moves_the_order_and_records_its_event(
    now: datetime, start: Status, action: str
) -> None:
    order = order_in(start, now)
    version = order.version
    later = now + timedelta(minutes=5)
    act, target, event_type, stamp = ACTIONS[action]

    act(order, later)

    assert order.status is target
    assert getattr(order, stamp) == later
    assert order.version == version + 1
    version_recorded, event = order.pending[-1]
    assert version_recorded == version + 1
    assert type(event) is event_type
    assert event.aggregate_id == "o1"


@pytest.mark.parametrize(("start", "action"), ILLEGAL_PAIRS, ids=map(pair_id, ILLEGAL_PAIRS))
def test_an_illegal_transition_raises_and_changes_nothing(
    now: datetime, start: Status, action: str
) -> None:
    order = order_in(start, now)
    before = state(order)
    act, target, _, _ = ACTIONS[action]

    with pytest.raises(IllegalStatusTransition) as raised:
        act(order, now + timedelta(minutes=5))

    assert raised.value.code == "ILLEGAL_STATUS_TRANSITION"
    assert raised.value.field == "orderId"
    assert f"{start.value} cannot become {target.value}" in raised.value.message
    assert state(order) == before


def test_cancelling_a_paid_order_is_allowed(now: datetime) -> None:
    order = order_in(Status.PAID, now)

    order.cancel(now, reason="customer changed their mind")

    assert order.status is Status.CANCELLED
    assert order.pending[-1] == (3, OrderCancelled("o1", reason="customer changed their mind"))


def test_cancelling_a_shipped_order_is_illegal(now: datetime) -> None:
    order = order_in(Status.SHIPPED, now)

    with pytest.raises(IllegalStatusTransition):
        order.cancel(now)


def test_a_cancellation_reason_over_two_hundred_characters_is_refused_and_cancels_nothing(
    now: datetime,
) -> None:
    order = place(now)

    order.cancel(now, reason="x" * 200)
    assert order.pending[-1][1] == OrderCancelled("o1", reason="x" * 200)

    again = place(now)
    with pytest.raises(TextMustFit) as raised:
        again.cancel(now, reason="x" * 201)
    assert (raised.value.code, raised.value.field) == ("TEXT_OUT_OF_BOUNDS", "reason")
    assert again.status is OrderStatus.PLACED and again.version == 1


def test_a_full_life_records_placed_paid_shipped_in_versions_1_to_3(now: datetime) -> None:
    order = place(now)

    order.pay(now)
    order.ship(now)

    assert [(v, type(e)) for v, e in order.pending] == [
        (1, OrderPlaced),
        (2, OrderPaid),
        (3, OrderShipped),
    ]


# --- optimistic concurrency -------------------------------------------------------------


def test_expecting_the_current_version_passes(now: datetime) -> None:
    order = place(now)
    order.pay(now)

    order.expect_version(2)


def test_expecting_no_particular_version_passes(now: datetime) -> None:
    place(now).expect_version(None)


@pytest.mark.parametrize("expected", [0, 1, 3, 99])
def test_expecting_another_version_raises_a_version_conflict(now: datetime, expected: int) -> None:
    order = place(now)
    order.pay(now)

    with pytest.raises(ConcurrencyConflict) as raised:
        order.expect_version(expected)

    conflict = raised.value
    assert conflict.code == "VERSION_CONFLICT"
    assert conflict.field == "expectedVersion"
    assert (conflict.expected, conflict.actual) == (expected, 2)
    assert conflict.message == f"Order o1 is at version 2, not at the expected version {expected}"
    assert isinstance(conflict, DomainError)


def test_a_command_at_a_stale_version_is_refused_after_another_changed_the_order(
    now: datetime,
) -> None:
    order = place(now)
    seen = order.version
    order.pay(now)  # someone else's command lands first

    with pytest.raises(ConcurrencyConflict):
        order.expect_version(seen)
    assert order.status is Status.PAID


def _aggregates(now: datetime) -> list[Aggregate]:
    stock = Stock("p1")
    stock.receive(1)
    return [
        Product.create("p1", sku="A", name="A", price=1, currency="EUR", now=now),
        stock,
        Customer.register("c1", email="a@b.co", name="A"),
        place(now),
    ]


def test_every_aggregate_names_itself_in_a_version_conflict(now: datetime) -> None:
    for aggregate in _aggregates(now):
        assert aggregate.version == 1
        aggregate.expect_version(1)
        with pytest.raises(ConcurrencyConflict) as raised:
            aggregate.expect_version(0)
        assert raised.value.code == "VERSION_CONFLICT"
        assert raised.value.message.startswith(f"{type(aggregate).__name__} {aggregate.id} ")
