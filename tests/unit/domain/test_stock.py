"""Stock: receiving, counting, reserving, releasing and committing units."""

from __future__ import annotations

import json

import pytest

from domain.errors import InvalidInput, RuleBroken
from domain.events import (
    StockAdjusted,
    StockCommitted,
    StockReceived,
    StockReleased,
    StockReserved,
)
from domain.rules import (
    MAX_INT,
    MAX_QUANTITY,
    QuantityMustBePositive,
    QuantityMustFit,
    ReservedCannotExceedOnHand,
    ReservedCannotGoNegative,
    StockCannotGoNegative,
    TextMustFit,
)
from domain.stock import InsufficientStock, Stock


def stock_with(on_hand: int = 0, reserved: int = 0) -> Stock:
    """A stock at the given figures, reached through the domain's own methods."""
    stock = Stock("p1")
    if on_hand:
        stock.receive(on_hand)
    if reserved:
        stock.reserve("o0", reserved)
    return stock


def figures(stock: Stock) -> tuple[int, int, int, int, int]:
    return stock.on_hand, stock.reserved, stock.units_sold, stock.version, len(stock.pending)


def last_event(stock: Stock) -> object:
    return stock.pending[-1][1]


def test_a_new_stock_holds_nothing_and_has_recorded_nothing() -> None:
    stock = Stock("p1")

    assert figures(stock) == (0, 0, 0, 0, 0)
    assert stock.available == 0


# --- receive ----------------------------------------------------------------------------


def test_receiving_stock_adds_to_on_hand_and_records_stock_received() -> None:
    stock = Stock("p1")

    stock.receive(10)
    stock.receive(5)

    assert (stock.on_hand, stock.available) == (15, 15)
    assert stock.pending == [
        (1, StockReceived("p1", quantity=10, on_hand=10)),
        (2, StockReceived("p1", quantity=5, on_hand=15)),
    ]


def test_receiving_the_largest_allowed_quantity_is_accepted() -> None:
    stock = Stock("p1")

    stock.receive(MAX_QUANTITY)

    assert stock.on_hand == MAX_QUANTITY


@pytest.mark.parametrize(
    ("quantity", "code"),
    [
        (0, "QUANTITY_NOT_POSITIVE"),
        (-1, "QUANTITY_NOT_POSITIVE"),
        (MAX_QUANTITY + 1, "QUANTITY_TOO_LARGE"),
        (MAX_INT, "QUANTITY_TOO_LARGE"),
    ],
)
def test_receiving_a_quantity_outside_one_to_a_million_is_refused(quantity: int, code: str) -> None:
    stock = stock_with(on_hand=3)
    before = figures(stock)

    with pytest.raises(InvalidInput) as raised:
        stock.receive(quantity)

    assert raised.value.code == code
    assert raised.value.field == "quantity"
    assert figures(stock) == before


# --- adjust -----------------------------------------------------------------------------


def test_adjusting_sets_on_hand_to_the_counted_figure_and_records_stock_adjusted() -> None:
    stock = stock_with(on_hand=10)

    stock.adjust(7, reason="stocktake")

    assert stock.on_hand == 7
    assert stock.pending[-1] == (
        2,
        StockAdjusted("p1", old_on_hand=10, on_hand=7, reason="stocktake"),
    )


def test_adjusting_upwards_is_allowed() -> None:
    stock = stock_with(on_hand=2)

    stock.adjust(40)

    assert stock.on_hand == 40
    assert last_event(stock) == StockAdjusted("p1", old_on_hand=2, on_hand=40, reason="")


def test_adjusting_to_zero_with_nothing_reserved_is_allowed() -> None:
    stock = stock_with(on_hand=4)

    stock.adjust(0)

    assert (stock.on_hand, stock.version) == (0, 2)


def test_adjusting_to_the_current_figure_records_nothing() -> None:
    stock = stock_with(on_hand=10, reserved=3)
    before = figures(stock)

    stock.adjust(10, reason="recount")

    assert figures(stock) == before


def test_an_adjustment_reason_over_two_hundred_characters_is_refused() -> None:
    stock = stock_with(on_hand=10)
    before = figures(stock)

    with pytest.raises(TextMustFit) as raised:
        stock.adjust(9, reason="r" * 201)

    assert (raised.value.code, raised.value.field) == ("TEXT_OUT_OF_BOUNDS", "reason")
    assert figures(stock) == before
    stock.adjust(9, reason="r" * 200)
    assert last_event(stock) == StockAdjusted("p1", old_on_hand=10, on_hand=9, reason="r" * 200)


@pytest.mark.parametrize("on_hand", [-1, -100])
def test_adjusting_to_a_negative_figure_is_refused(on_hand: int) -> None:
    stock = stock_with(on_hand=10)
    before = figures(stock)

    with pytest.raises(StockCannotGoNegative) as raised:
        stock.adjust(on_hand)

    assert raised.value.code == "STOCK_CANNOT_GO_NEGATIVE"
    assert raised.value.field == "onHand"
    assert figures(stock) == before


def test_adjusting_below_the_reserved_units_is_refused() -> None:
    stock = stock_with(on_hand=10, reserved=6)
    before = figures(stock)

    with pytest.raises(ReservedCannotExceedOnHand) as raised:
        stock.adjust(5)

    assert type(raised.value) is ReservedCannotExceedOnHand
    assert raised.value.code == "RESERVED_CANNOT_EXCEED_ON_HAND"
    assert raised.value.field == "onHand"
    assert figures(stock) == before


def test_adjusting_down_to_exactly_the_reserved_units_is_allowed() -> None:
    stock = stock_with(on_hand=10, reserved=6)

    stock.adjust(6)

    assert (stock.on_hand, stock.reserved, stock.available) == (6, 6, 0)


# --- reserve ----------------------------------------------------------------------------


def test_reserving_holds_units_and_records_the_running_reserved_total() -> None:
    stock = stock_with(on_hand=10)

    stock.reserve("o1", 3)
    stock.reserve("o2", 4)

    assert (stock.on_hand, stock.reserved, stock.available) == (10, 7, 3)
    assert stock.pending[1:] == [
        (2, StockReserved("p1", order_id="o1", quantity=3, reserved=3)),
        (3, StockReserved("p1", order_id="o2", quantity=4, reserved=7)),
    ]


def test_reserving_everything_available_is_allowed() -> None:
    stock = stock_with(on_hand=10, reserved=4)

    stock.reserve("o1", 6)

    assert (stock.reserved, stock.available) == (10, 0)


@pytest.mark.parametrize(("on_hand", "reserved", "quantity"), [(0, 0, 1), (10, 0, 11), (10, 4, 7)])
def test_reserving_more_than_available_raises_insufficient_stock(
    on_hand: int, reserved: int, quantity: int
) -> None:
    stock = stock_with(on_hand=on_hand, reserved=reserved)
    before = figures(stock)

    with pytest.raises(InsufficientStock) as raised:
        stock.reserve("o1", quantity)

    assert raised.value.code == "INSUFFICIENT_STOCK"
    assert raised.value.field == "quantity"
    assert f"{on_hand - reserved} available" in raised.value.message
    assert figures(stock) == before


def test_insufficient_stock_is_the_reserved_cannot_exceed_on_hand_rule() -> None:
    assert issubclass(InsufficientStock, ReservedCannotExceedOnHand)
    assert issubclass(InsufficientStock, RuleBroken)


def test_a_refused_reservation_names_the_field_the_caller_gave() -> None:
    stock = stock_with(on_hand=1)

    with pytest.raises(InsufficientStock) as raised:
        stock.reserve("o1", 2, field="lines.3.quantity")

    assert raised.value.field == "lines.3.quantity"


@pytest.mark.parametrize("quantity", [0, -2, MAX_QUANTITY + 1])
def test_reserving_a_quantity_outside_one_to_a_million_is_refused(quantity: int) -> None:
    stock = stock_with(on_hand=10)
    before = figures(stock)

    with pytest.raises((QuantityMustBePositive, QuantityMustFit)) as raised:
        stock.reserve("o1", quantity, field="lines.0.quantity")

    assert raised.value.field == "lines.0.quantity"
    assert figures(stock) == before


# --- release ----------------------------------------------------------------------------


def test_releasing_returns_reserved_units_to_available() -> None:
    stock = stock_with(on_hand=10, reserved=6)

    stock.release("o1", 4)

    assert (stock.on_hand, stock.reserved, stock.available) == (10, 2, 8)
    assert stock.pending[-1] == (
        3,
        StockReleased("p1", order_id="o1", quantity=4, reserved=2),
    )


def test_releasing_everything_reserved_is_allowed() -> None:
    stock = stock_with(on_hand=10, reserved=6)

    stock.release("o1", 6)

    assert stock.reserved == 0


@pytest.mark.parametrize(("reserved", "quantity"), [(0, 1), (6, 7)])
def test_releasing_more_than_reserved_is_refused(reserved: int, quantity: int) -> None:
    stock = stock_with(on_hand=10, reserved=reserved)
    before = figures(stock)

    with pytest.raises(ReservedCannotGoNegative) as raised:
        stock.release("o1", quantity)

    assert raised.value.code == "RESERVED_CANNOT_GO_NEGATIVE"
    # The quantity is the order line's, not a client's input: no field to name.
    assert raised.value.field is None
    assert figures(stock) == before


@pytest.mark.parametrize("quantity", [0, -1])
def test_releasing_a_quantity_that_is_not_positive_is_refused(quantity: int) -> None:
    stock = stock_with(on_hand=10, reserved=6)
    before = figures(stock)

    with pytest.raises(QuantityMustBePositive):
        stock.release("o1", quantity)

    assert figures(stock) == before


# --- commit -----------------------------------------------------------------------------


def test_committing_takes_units_out_of_on_hand_and_the_reservation_together() -> None:
    stock = stock_with(on_hand=10, reserved=6)

    stock.commit("o1", 4)

    assert (stock.on_hand, stock.reserved, stock.units_sold, stock.available) == (6, 2, 4, 4)
    assert stock.pending[-1] == (
        3,
        StockCommitted("p1", order_id="o1", quantity=4, on_hand=6, reserved=2, units_sold=4),
    )


def test_units_sold_accumulates_over_commits() -> None:
    stock = stock_with(on_hand=10, reserved=9)

    stock.commit("o1", 2)
    stock.commit("o2", 3)

    assert stock.units_sold == 5
    assert last_event(stock) == StockCommitted(
        "p1", order_id="o2", quantity=3, on_hand=5, reserved=4, units_sold=5
    )


def test_committing_leaves_the_unreserved_units_available() -> None:
    stock = stock_with(on_hand=10, reserved=3)

    stock.commit("o1", 3)

    assert (stock.on_hand, stock.reserved, stock.available) == (7, 0, 7)


@pytest.mark.parametrize(("reserved", "quantity"), [(0, 1), (3, 4)])
def test_committing_more_than_reserved_is_refused(reserved: int, quantity: int) -> None:
    stock = stock_with(on_hand=10, reserved=reserved)
    before = figures(stock)

    with pytest.raises(ReservedCannotGoNegative) as raised:
        stock.commit("o1", quantity)

    assert raised.value.code == "RESERVED_CANNOT_GO_NEGATIVE"
    assert figures(stock) == before


@pytest.mark.parametrize("quantity", [0, -1])
def test_committing_a_quantity_that_is_not_positive_is_refused(quantity: int) -> None:
    stock = stock_with(on_hand=10, reserved=6)
    before = figures(stock)

    with pytest.raises(QuantityMustBePositive):
        stock.commit("o1", quantity)

    assert figures(stock) == before


# --- versions and events ----------------------------------------------------------------


def test_every_accepted_operation_takes_the_next_version() -> None:
    stock = Stock("p1")

    stock.receive(10)
    stock.reserve("o1", 5)
    stock.release("o1", 1)
    stock.commit("o1", 2)
    stock.adjust(20, reason="found a box")

    assert stock.version == 5
    assert [version for version, _ in stock.pending] == [1, 2, 3, 4, 5]
    assert [event.event_type for _, event in stock.pending] == [
        "StockReceived",
        "StockReserved",
        "StockReleased",
        "StockCommitted",
        "StockAdjusted",
    ]


def test_stock_events_belong_to_the_stock_aggregate_and_serialise_to_json() -> None:
    stock = Stock("p1")
    stock.receive(10)
    stock.reserve("o1", 5)
    stock.release("o1", 1)
    stock.commit("o1", 2)
    stock.adjust(20)

    for _, event in stock.pending:
        assert event.aggregate_type == "Stock"
        assert event.aggregate_id == "p1"
        assert json.loads(json.dumps(event.payload())) == event.payload()
