"""Events: what happened, in the past tense, as plain data.

The write model stores each in the outbox with its aggregate's type, id and
version; the read model projects them. Payloads are JSON-ready: ints, strings,
lists and dicts only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

__all__ = [
    "CustomerErased",
    "CustomerRegistered",
    "Event",
    "OrderCancelled",
    "OrderPaid",
    "OrderPlaced",
    "OrderShipped",
    "PriceChanged",
    "ProductCreated",
    "ProductDiscontinued",
    "ProductUpdated",
    "StockAdjusted",
    "StockCommitted",
    "StockReceived",
    "StockReleased",
    "StockReserved",
]


@dataclass(frozen=True)
class Event:
    aggregate_type: ClassVar[str] = ""
    aggregate_id: str

    @property
    def event_type(self) -> str:
        return type(self).__name__

    def payload(self) -> dict[str, Any]:
        data = asdict(self)
        del data["aggregate_id"]
        return data


@dataclass(frozen=True)
class ProductCreated(Event):
    aggregate_type = "Product"
    sku: str
    name: str
    description: str
    category: str
    tags: list[str]
    price: int
    currency: str
    status: str


@dataclass(frozen=True)
class ProductUpdated(Event):
    aggregate_type = "Product"
    name: str
    description: str
    category: str
    tags: list[str]
    status: str


@dataclass(frozen=True)
class PriceChanged(Event):
    aggregate_type = "Product"
    old_price: int
    new_price: int
    currency: str


@dataclass(frozen=True)
class ProductDiscontinued(Event):
    aggregate_type = "Product"


@dataclass(frozen=True)
class StockReceived(Event):
    aggregate_type = "Stock"
    quantity: int
    on_hand: int


@dataclass(frozen=True)
class StockAdjusted(Event):
    aggregate_type = "Stock"
    old_on_hand: int
    on_hand: int
    reason: str


@dataclass(frozen=True)
class StockReserved(Event):
    aggregate_type = "Stock"
    order_id: str
    quantity: int
    reserved: int


@dataclass(frozen=True)
class StockReleased(Event):
    aggregate_type = "Stock"
    order_id: str
    quantity: int
    reserved: int


@dataclass(frozen=True)
class StockCommitted(Event):
    """Reserved units left the warehouse with a shipped order."""

    aggregate_type = "Stock"
    order_id: str
    quantity: int
    on_hand: int
    reserved: int
    units_sold: int


@dataclass(frozen=True)
class CustomerRegistered(Event):
    aggregate_type = "Customer"
    email: str
    name: str


@dataclass(frozen=True)
class CustomerErased(Event):
    """Personal data removed; the customer's orders remain, anonymised."""

    aggregate_type = "Customer"


@dataclass(frozen=True)
class OrderPlaced(Event):
    aggregate_type = "Order"
    customer_id: str
    lines: list[dict[str, Any]]
    total: int
    currency: str


@dataclass(frozen=True)
class OrderPaid(Event):
    aggregate_type = "Order"


@dataclass(frozen=True)
class OrderShipped(Event):
    aggregate_type = "Order"


@dataclass(frozen=True)
class OrderCancelled(Event):
    aggregate_type = "Order"
    reason: str
