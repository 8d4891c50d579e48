"""Order: a customer's lines at the prices of the moment, and where it stands.

placed -> paid -> shipped
placed | paid -> cancelled   (releases the reserved stock)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from domain.aggregate import Aggregate
from domain.errors import RuleBroken
from domain.events import OrderCancelled, OrderPaid, OrderPlaced, OrderShipped
from domain.rules import (
    OrderLinesMustShareCurrency,
    OrderMustHaveLines,
    OrderTotalMustFit,
    PriceMustBePositive,
    QuantityMustBePositive,
    TextMustFit,
)

__all__ = ["IllegalStatusTransition", "Order", "OrderLine", "OrderStatus"]


class OrderStatus(StrEnum):
    PLACED = "placed"
    PAID = "paid"
    SHIPPED = "shipped"
    CANCELLED = "cancelled"


_LEGAL = {
    OrderStatus.PLACED: {OrderStatus.PAID, OrderStatus.CANCELLED},
    OrderStatus.PAID: {OrderStatus.SHIPPED, OrderStatus.CANCELLED},
    OrderStatus.SHIPPED: set(),
    OrderStatus.CANCELLED: set(),
}


class IllegalStatusTransition(RuleBroken):
    code = "ILLEGAL_STATUS_TRANSITION"


@dataclass(frozen=True)
class OrderLine:
    product_id: str
    sku: str
    quantity: int
    unit_price: int

    @property
    def amount(self) -> int:
        return self.quantity * self.unit_price


@dataclass(eq=False)
class Order(Aggregate):
    customer_id: str = ""
    lines: list[OrderLine] = field(default_factory=list)
    currency: str = ""
    status: OrderStatus = OrderStatus.PLACED
    placed_at: datetime | None = None
    paid_at: datetime | None = None
    shipped_at: datetime | None = None
    cancelled_at: datetime | None = None

    @property
    def total(self) -> int:
        return sum(line.amount for line in self.lines)

    @classmethod
    def place(
        cls,
        id: str,
        *,
        customer_id: str,
        lines: list[OrderLine],
        currencies: set[str],
        now: datetime,
    ) -> Order:
        """Stock reservation and product checks are the handler's: they span aggregates."""
        OrderMustHaveLines.check(len(lines))
        OrderLinesMustShareCurrency.check(currencies)
        for i, line in enumerate(lines):
            QuantityMustBePositive.check(line.quantity, f"lines.{i}.quantity")
            # The unit price is the product's, not an input: the line's sku names it.
            PriceMustBePositive.check(line.unit_price, f"lines.{i}.sku")
        OrderTotalMustFit.check(sum(line.amount for line in lines))
        order = cls(
            id,
            customer_id=customer_id,
            lines=list(lines),
            currency=next(iter(currencies)),
            placed_at=now,
        )
        order.record(
            OrderPlaced(
                id,
                customer_id=customer_id,
                lines=[
                    {
                        "product_id": ln.product_id,
                        "sku": ln.sku,
                        "quantity": ln.quantity,
                        "unit_price": ln.unit_price,
                    }
                    for ln in lines
                ],
                total=order.total,
                currency=order.currency,
            )
        )
        return order

    def pay(self, now: datetime) -> None:
        self._move_to(OrderStatus.PAID)
        self.paid_at = now
        self.record(OrderPaid(self.id))

    def ship(self, now: datetime) -> None:
        self._move_to(OrderStatus.SHIPPED)
        self.shipped_at = now
        self.record(OrderShipped(self.id))

    def cancel(self, now: datetime, reason: str = "") -> None:
        reason = TextMustFit.check(reason, "reason", "reason", required=False)
        self._move_to(OrderStatus.CANCELLED)
        self.cancelled_at = now
        self.record(OrderCancelled(self.id, reason=reason))

    def _move_to(self, target: OrderStatus) -> None:
        if target not in _LEGAL[self.status]:
            raise IllegalStatusTransition(
                f"an order that is {self.status.value} cannot become {target.value}",
                field="orderId",
            )
        self.status = target
