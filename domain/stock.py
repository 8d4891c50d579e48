"""Stock: the units of one product on hand, and how many of them orders hold.

Invariant: 0 <= reserved <= on_hand, always.
"""

from __future__ import annotations

from dataclasses import dataclass

from domain.aggregate import Aggregate
from domain.events import StockAdjusted, StockCommitted, StockReceived, StockReleased, StockReserved
from domain.rules import (
    QuantityMustBePositive,
    ReservedCannotExceedOnHand,
    ReservedCannotGoNegative,
    StockCannotExceedLimit,
    StockCannotGoNegative,
    TextMustFit,
    UnitsSoldMustFit,
)

__all__ = ["InsufficientStock", "Stock"]


class InsufficientStock(ReservedCannotExceedOnHand):
    code = "INSUFFICIENT_STOCK"


@dataclass(eq=False)
class Stock(Aggregate):
    """Keyed by its product's id: one stock per product."""

    on_hand: int = 0
    reserved: int = 0
    units_sold: int = 0

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved

    def receive(self, quantity: int, field: str = "quantity") -> None:
        quantity = QuantityMustBePositive.check(quantity, field)
        StockCannotExceedLimit.check(self.on_hand + quantity, field)
        self.on_hand += quantity
        self.record(StockReceived(self.id, quantity=quantity, on_hand=self.on_hand))

    def adjust(self, on_hand: int, reason: str = "") -> None:
        """Set on-hand to a counted figure (a stocktake); reserved units must remain covered."""
        StockCannotGoNegative.check(on_hand, field="onHand")
        StockCannotExceedLimit.check(on_hand, field="onHand")
        reason = TextMustFit.check(reason, "reason", "reason", required=False)
        ReservedCannotExceedOnHand.check(self.reserved, on_hand, field="onHand")
        if on_hand == self.on_hand:
            return
        old, self.on_hand = self.on_hand, on_hand
        self.record(StockAdjusted(self.id, old_on_hand=old, on_hand=on_hand, reason=reason))

    def reserve(self, order_id: str, quantity: int, field: str = "quantity") -> None:
        quantity = QuantityMustBePositive.check(quantity, field)
        if self.reserved + quantity > self.on_hand:
            raise InsufficientStock(
                f"{quantity} requested, {self.available} available", field=field
            )
        self.reserved += quantity
        self.record(
            StockReserved(self.id, order_id=order_id, quantity=quantity, reserved=self.reserved)
        )

    # Releasing and committing take their quantities from an order's lines, not
    # from a client's input: an error here names no input field.
    def release(self, order_id: str, quantity: int) -> None:
        quantity = QuantityMustBePositive.check(quantity, None)
        ReservedCannotGoNegative.check(self.reserved - quantity, None)
        self.reserved -= quantity
        self.record(
            StockReleased(self.id, order_id=order_id, quantity=quantity, reserved=self.reserved)
        )

    def commit(self, order_id: str, quantity: int) -> None:
        """Reserved units ship: they leave on-hand and the reservation together."""
        quantity = QuantityMustBePositive.check(quantity, None)
        ReservedCannotGoNegative.check(self.reserved - quantity, None)
        UnitsSoldMustFit.check(self.units_sold + quantity)
        self.reserved -= quantity
        self.on_hand -= quantity
        self.units_sold += quantity
        self.record(
            StockCommitted(
                self.id,
                order_id=order_id,
                quantity=quantity,
                on_hand=self.on_hand,
                reserved=self.reserved,
                units_sold=self.units_sold,
            )
        )
