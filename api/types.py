"""The GraphQL object types, each read from its read-model document
(readmodel/documents.py). Queries read the documents from Elasticsearch;
mutations answer with the same documents built from the write database right
after the commit (api/mutations/_command.py), so both show one object alike.
"""

from __future__ import annotations

import re
import warnings
from datetime import datetime
from typing import Any, NewType

import strawberry
from graphql import IntValueNode, StringValueNode, ValueNode

from api.node import Node
from api.policy import sees_contact_details
from domain.order import OrderStatus
from domain.product import ProductStatus
from domain.rules import MAX_SAFE_INTEGER
from readmodel.documents import CustomerDocument, OrderDocument, ProductDocument

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


# The domain's own enums are the schema's: a status keeps one form from the
# client to the aggregate and back (names as GraphQL shows them, values as stored).
strawberry.enum(ProductStatus, name="ProductStatus", description="Where a product is in its life.")
strawberry.enum(
    OrderStatus,
    name="OrderStatus",
    description="placed -> paid -> shipped; placed or paid -> cancelled.",
)


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
    def from_document(cls, doc: ProductDocument) -> Product:
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
            created_at=_time(doc["created_at"]),
            updated_at=_time(doc["updated_at"]),
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
    def from_document(cls, doc: OrderDocument) -> Order:
        currency = doc["currency"]
        customer = doc["customer"]
        return cls(
            id=strawberry.ID(doc["id"]),
            version=doc["version"],
            status=OrderStatus(doc["status"]),
            total=Money(amount=doc["total"], currency=currency),
            customer=OrderCustomer(
                id=strawberry.ID(customer["id"]),
                name=customer["name"],
                stored_email=customer["email"],
                erased=customer["erased"],
            ),
            lines=[
                OrderLine(
                    product_id=strawberry.ID(ln["product_id"]),
                    sku=ln["sku"],
                    product_name=ln["product_name"],
                    quantity=ln["quantity"],
                    unit_price=Money(amount=ln["unit_price"], currency=currency),
                    amount=Money(amount=ln["amount"], currency=currency),
                )
                for ln in doc["lines"]
            ],
            placed_at=_time(doc["placed_at"]),
            paid_at=_time(doc["paid_at"]),
            shipped_at=_time(doc["shipped_at"]),
            cancelled_at=_time(doc["cancelled_at"]),
        )


@strawberry.type
class Customer(Node):
    id: strawberry.ID
    version: int
    name: str | None
    stored_email: strawberry.Private[str | None]
    erased: bool
    order_count: Long | None = strawberry.field(description="Orders placed.")
    total_spent: Long | None = strawberry.field(
        description="Minor units over paid and shipped orders."
    )
    last_order_at: datetime | None

    @strawberry.field(description=_EMAIL_HELP)
    def email(self, info: strawberry.Info) -> str | None:
        return self.stored_email if sees_contact_details(info.context, self.id) else None

    @classmethod
    def from_document(cls, doc: CustomerDocument) -> Customer:
        return cls(
            id=strawberry.ID(doc["id"]),
            version=doc["version"],
            name=doc["name"],
            stored_email=doc["email"],
            erased=doc["erased"],
            order_count=doc["order_count"],
            total_spent=doc["total_spent"],
            last_order_at=_time(doc["last_order_at"]),
        )
