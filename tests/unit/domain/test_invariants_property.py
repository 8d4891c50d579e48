"""Property tests: whatever sequence of commands arrives, the invariants hold.

Each sequence is checked against a small model written here from the rules in
DESIGN.md, not from the domain code, so the domain cannot agree with itself by
accident.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from hypothesis import given, note, settings
from hypothesis import strategies as st

from domain.errors import DomainError
from domain.events import (
    OrderCancelled,
    OrderPaid,
    OrderPlaced,
    OrderShipped,
    StockAdjusted,
    StockCommitted,
    StockReceived,
    StockReleased,
    StockReserved,
)
from domain.order import IllegalStatusTransition, Order, OrderLine, OrderStatus
from domain.rules import MAX_QUANTITY
from domain.stock import Stock

PROPERTY = settings(max_examples=200, deadline=None)

# --- stock ------------------------------------------------------------------------------

# Mostly small numbers, so reservations collide with what is on hand; now and then a bound.
quantities = st.one_of(
    st.integers(min_value=-3, max_value=25),
    st.sampled_from([MAX_QUANTITY, MAX_QUANTITY + 1]),
)
stock_operations = st.lists(
    st.one_of(
        st.tuples(st.just("receive"), quantities),
        st.tuples(st.just("adjust"), st.integers(min_value=-3, max_value=40)),
        st.tuples(st.just("reserve"), quantities),
        st.tuples(st.just("release"), quantities),
        st.tuples(st.just("commit"), quantities),
    ),
    max_size=40,
)


@dataclass(frozen=True)
class StockFigures:
    on_hand: int
    reserved: int
    units_sold: int


def figures(stock: Stock) -> StockFigures:
    return StockFigures(stock.on_hand, stock.reserved, stock.units_sold)


def apply(stock: Stock, operation: str, quantity: int) -> None:
    if operation == "receive":
        stock.receive(quantity)
    elif operation == "adjust":
        stock.adjust(quantity, reason="count")
    elif operation == "reserve":
        stock.reserve("o1", quantity)
    elif operation == "release":
        stock.release("o1", quantity)
    else:
        stock.commit("o1", quantity)


def model(state: StockFigures, operation: str, quantity: int) -> StockFigures | None:
    """What the rules say the figures become, or None when the command must be refused."""
    on_hand, reserved, sold = state.on_hand, state.reserved, state.units_sold
    if operation == "adjust":
        if quantity < 0 or quantity < reserved:
            return None
        return StockFigures(quantity, reserved, sold)
    if not 1 <= quantity <= MAX_QUANTITY:
        return None
    if operation == "receive":
        return StockFigures(on_hand + quantity, reserved, sold)
    if operation == "reserve":
        if reserved + quantity > on_hand:
            return None
        return StockFigures(on_hand, reserved + quantity, sold)
    if quantity > reserved:  # release and commit act on reserved units only
        return None
    if operation == "release":
        return StockFigures(on_hand, reserved - quantity, sold)
    return StockFigures(on_hand - quantity, reserved - quantity, sold + quantity)


def event_agrees_with(event: object, after: StockFigures) -> bool:
    match event:
        case StockReceived(on_hand=on_hand) | StockAdjusted(on_hand=on_hand):
            return on_hand == after.on_hand
        case StockReserved(reserved=reserved) | StockReleased(reserved=reserved):
            return reserved == after.reserved
        case StockCommitted(on_hand=on_hand, reserved=reserved, units_sold=sold):
            return (on_hand, reserved, sold) == (after.on_hand, after.reserved, after.units_sold)
    return False


@PROPERTY
@given(stock_operations)
def test_any_sequence_of_stock_operations_keeps_reserved_between_zero_and_on_hand(
    operations: list[tuple[str, int]],
) -> None:
    stock = Stock("p1")
    for operation, quantity in operations:
        before = (figures(stock), stock.version, len(stock.pending))
        try:
            apply(stock, operation, quantity)
        except DomainError as refused:
            note(f"{operation}({quantity}) refused: {refused.code}")
            assert (figures(stock), stock.version, len(stock.pending)) == before
        else:
            assert stock.version - before[1] in (0, 1)
        assert 0 <= stock.reserved <= stock.on_hand
        assert stock.units_sold >= 0
        assert stock.version == len(stock.pending)
    assert [version for version, _ in stock.pending] == list(range(1, stock.version + 1))


@PROPERTY
@given(stock_operations)
def test_stock_refuses_exactly_the_operations_the_rules_forbid(
    operations: list[tuple[str, int]],
) -> None:
    stock = Stock("p1")
    for operation, quantity in operations:
        expected = model(figures(stock), operation, quantity)
        events_before = len(stock.pending)
        try:
            apply(stock, operation, quantity)
        except DomainError as refused:
            assert expected is None, f"{operation}({quantity}) refused ({refused.code})"
            continue
        assert expected is not None, f"{operation}({quantity}) accepted at {stock!r}"
        assert figures(stock) == expected
        new_events = [event for _, event in stock.pending[events_before:]]
        if new_events:
            (event,) = new_events
            assert event_agrees_with(event, expected)
        else:  # only a count that matches what is on hand records nothing
            assert operation == "adjust"


# --- order status -----------------------------------------------------------------------

MOVES = {
    "pay": (OrderStatus.PAID, OrderPaid),
    "ship": (OrderStatus.SHIPPED, OrderShipped),
    "cancel": (OrderStatus.CANCELLED, OrderCancelled),
}
ALLOWED = {
    (OrderStatus.PLACED, OrderStatus.PAID),
    (OrderStatus.PAID, OrderStatus.SHIPPED),
    (OrderStatus.PLACED, OrderStatus.CANCELLED),
    (OrderStatus.PAID, OrderStatus.CANCELLED),
}
FINAL = {OrderStatus.SHIPPED, OrderStatus.CANCELLED}
POSSIBLE_LIVES = {
    ("placed",),
    ("placed", "paid"),
    ("placed", "paid", "shipped"),
    ("placed", "cancelled"),
    ("placed", "paid", "cancelled"),
}


@PROPERTY
@given(st.lists(st.sampled_from(sorted(MOVES)), max_size=12))
def test_an_order_only_ever_follows_the_legal_status_path(actions: list[str]) -> None:
    now = datetime.now(UTC)
    order = Order.place(
        "o1",
        customer_id="c1",
        lines=[OrderLine(product_id="p1", sku="SKU-1", quantity=1, unit_price=100)],
        currencies={"EUR"},
        now=now,
    )
    life = [order.status.value]
    expected_events: list[type] = [OrderPlaced]

    for action in actions:
        target, event_type = MOVES[action]
        start = order.status
        before = (order.version, len(order.pending), order.status)
        try:
            getattr(order, action)(now)
        except IllegalStatusTransition:
            assert (start, target) not in ALLOWED
            assert (order.version, len(order.pending), order.status) == before
        else:
            assert start not in FINAL, f"{action} succeeded on a {start.value} order"
            assert (start, target) in ALLOWED
            assert order.status is target
            life.append(order.status.value)
            expected_events.append(event_type)

    assert tuple(life) in POSSIBLE_LIVES
    assert [type(event) for _, event in order.pending] == expected_events
    assert [version for version, _ in order.pending] == list(range(1, order.version + 1))


@PROPERTY
@given(
    st.sampled_from([["pay", "ship"], ["cancel"], ["pay", "cancel"]]),
    st.lists(st.sampled_from(sorted(MOVES)), min_size=1, max_size=6),
)
def test_once_shipped_or_cancelled_every_further_transition_raises(
    path: list[str], afterwards: list[str]
) -> None:
    now = datetime.now(UTC)
    order = Order.place(
        "o1",
        customer_id="c1",
        lines=[OrderLine(product_id="p1", sku="SKU-1", quantity=1, unit_price=100)],
        currencies={"EUR"},
        now=now,
    )
    for action in path:
        getattr(order, action)(now)
    final = order.status
    version = order.version

    for action in afterwards:
        try:
            getattr(order, action)(now)
        except IllegalStatusTransition as refused:
            assert refused.code == "ILLEGAL_STATUS_TRANSITION"
        else:
            raise AssertionError(f"{action} succeeded on a {final.value} order")

    assert (order.status, order.version) == (final, version)
