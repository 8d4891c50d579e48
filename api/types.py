"""The GraphQL object types, built from read-model documents.

Mutations answer from the write side's snapshots; `product_document` and
friends put those into the same shape as the read model's documents, so one
set of types serves both.
"""

from __future__ import annotations

import re
import warnings
from datetime import datetime
from enum import Enum
from typing import Any, NewType

import strawberry
from graphql import IntValueNode, StringValueNode, ValueNode

from api.node import Node
from api.policy import sees_contact_details
from domain.rules import MAX_SAFE_INTEGER

__all__ = [
    "Customer",
    "Long",
    "Money",
    "Order",
    "OrderCustomer",
    "OrderLine",
    "OrderStatus",
    "Product",
    "ProductStatus",
    "StockLevel",
    "customer_document",
    "order_document",
    "product_document",
]


_DIGITS = re.compile(r"-?[0-9]{1,16}")


def _long(value: Any) -> int:
    """An int, or a string of digits, that JavaScript's number holds exactly."""
    if isinstance(value, str) and _DIGITS.fullmatch(value):
        value = int(value)
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER
    ):
        raise ValueError(
            f"Long cannot represent {str(value)[:40]}: a whole number within "
            f"+-{MAX_SAFE_INTEGER} (2^53 - 1) is expected"
        )
    return value


def _long_literal(node: ValueNode, _variables: dict[str, Any] | None = None) -> int:
    if isinstance(node, IntValueNode | StringValueNode):
        return _long(node.value)
    raise ValueError("Long takes an integer or a string of digits")


# Figures that only accumulate (a customer's spending, a product's units sold,
# an order count) have no bound one command could check, so they get a wider
# type than Int. Sent as a JSON number: every JSON parser reads it, and
# JavaScript reads it exactly up to 2^53 - 1.
with warnings.catch_warnings():
    # strawberry would rather see custom scalars in the schema config's
    # scalar_map; a scalar declared with its type keeps the types in one module.
    warnings.simplefilter("ignore", DeprecationWarning)
    Long = strawberry.scalar(
        NewType("Long", int),
        name="Long",
        description="A whole number within +-(2^53 - 1), sent as a JSON number "
        "(exact in JavaScript); as input, also a string of digits.",
        serialize=_long,
        parse_value=_long,
        parse_literal=_long_literal,
    )


@strawberry.enum(description="Where a product is in its life.")
class ProductStatus(Enum):
    DRAFT = "draft"
    ACTIVE = "active"
    DISCONTINUED = "discontinued"


@strawberry.enum(description="placed -> paid -> shipped; placed or paid -> cancelled.")
class OrderStatus(Enum):
    PLACED = "placed"
    PAID = "paid"
    SHIPPED = "shipped"
    CANCELLED = "cancelled"


@strawberry.type(description="An amount in integer minor units (cents) of a currency.")
class Money:
    amount: int
    currency: str


@strawberry.type
class StockLevel:
    version: int = strawberry.field(
        description="The stock's own version: receiveStock and adjustStock expect this one."
    )
    on_hand: int
    reserved: int
    available: int
    in_stock: bool


def _time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


@strawberry.type
class Product(Node):
    id: strawberry.ID
    version: int = strawberry.field(description="Grows by one with each change.")
    sku: str
    name: str
    description: str
    category: str
    tags: list[str]
    price: Money
    status: ProductStatus
    stock: StockLevel
    units_sold: Long
    created_at: datetime | None
    updated_at: datetime | None

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> Product:
        return cls(
            id=strawberry.ID(doc["id"]),
            version=doc["version"],
            sku=doc["sku"],
            name=doc["name"],
            description=doc["description"],
            category=doc["category"],
            tags=list(doc["tags"]),
            price=Money(amount=doc["price"], currency=doc["currency"]),
            status=ProductStatus(doc["status"]),
            stock=StockLevel(
                version=doc["stock_version"],
                on_hand=doc["on_hand"],
                reserved=doc["reserved"],
                available=doc["available"],
                in_stock=doc["in_stock"],
            ),
            units_sold=doc["units_sold"],
            created_at=_time(doc.get("created_at")),
            updated_at=_time(doc.get("updated_at")),
        )


_EMAIL_HELP = "Shown to the customer themselves and to staff; null to anyone else (api/policy.py)."


@strawberry.type(description="The customer as the order shows them; empty once erased.")
class OrderCustomer:
    id: strawberry.ID
    name: str | None
    stored_email: strawberry.Private[str | None]
    erased: bool

    @strawberry.field(description=_EMAIL_HELP)
    def email(self, info: strawberry.Info) -> str | None:
        return self.stored_email if sees_contact_details(info.context, self.id) else None


@strawberry.type
class OrderLine:
    product_id: strawberry.ID
    sku: str
    product_name: str | None
    quantity: int
    unit_price: Money = strawberry.field(description="The price when the order was placed.")
    amount: Money


@strawberry.type
class Order(Node):
    id: strawberry.ID
    version: int
    status: OrderStatus
    total: Money
    customer: OrderCustomer
    lines: list[OrderLine]
    placed_at: datetime | None
    paid_at: datetime | None
    shipped_at: datetime | None
    cancelled_at: datetime | None

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> Order:
        currency = doc["currency"]
        customer = doc["customer"]
        return cls(
            id=strawberry.ID(doc["id"]),
            version=doc["version"],
            status=OrderStatus(doc["status"]),
            total=Money(amount=doc["total"], currency=currency),
            customer=OrderCustomer(
                id=strawberry.ID(customer["id"]),
                name=customer.get("name"),
                stored_email=customer.get("email"),
                erased=bool(customer.get("erased")),
            ),
            lines=[
                OrderLine(
                    product_id=strawberry.ID(ln["product_id"]),
                    sku=ln["sku"],
                    product_name=ln.get("product_name"),
                    quantity=ln["quantity"],
                    unit_price=Money(amount=ln["unit_price"], currency=currency),
                    amount=Money(amount=ln["quantity"] * ln["unit_price"], currency=currency),
                )
                for ln in doc["lines"]
            ],
            placed_at=_time(doc.get("placed_at")),
            paid_at=_time(doc.get("paid_at")),
            shipped_at=_time(doc.get("shipped_at")),
            cancelled_at=_time(doc.get("cancelled_at")),
        )


@strawberry.type
class Customer(Node):
    id: strawberry.ID
    version: int
    name: str | None
    stored_email: strawberry.Private[str | None]
    erased: bool
    order_count: Long | None = strawberry.field(
        description="Orders placed. Lifetime figures come from the read model: "
        "null in a mutation's answer."
    )
    total_spent: Long | None = strawberry.field(
        description="Minor units over paid and shipped orders; null in a mutation's answer."
    )
    last_order_at: datetime | None

    @strawberry.field(description=_EMAIL_HELP)
    def email(self, info: strawberry.Info) -> str | None:
        return self.stored_email if sees_contact_details(info.context, self.id) else None

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> Customer:
        return cls(
            id=strawberry.ID(doc["id"]),
            version=doc["version"],
            name=doc.get("name"),
            stored_email=doc.get("email"),
            erased=bool(doc.get("erased")),
            order_count=doc.get("order_count"),
            total_spent=doc.get("total_spent"),
            last_order_at=_time(doc.get("last_order_at")),
        )


def product_document(snapshot: dict[str, Any]) -> dict[str, Any]:
    """A write-side product snapshot in the read model's shape."""
    stock = snapshot.get("stock") or {}
    on_hand, reserved = stock.get("on_hand", 0), stock.get("reserved", 0)
    return {
        **snapshot,
        "stock_version": stock.get("version", 0),
        "on_hand": on_hand,
        "reserved": reserved,
        "available": on_hand - reserved,
        "in_stock": on_hand - reserved > 0,
        "units_sold": stock.get("units_sold", 0),
        "updated_at": None,
    }


def order_document(snapshot: dict[str, Any]) -> dict[str, Any]:
    customer = snapshot.get("customer") or {"id": snapshot["customer_id"]}
    return {**snapshot, "customer": customer}


def customer_document(snapshot: dict[str, Any]) -> dict[str, Any]:
    return snapshot
