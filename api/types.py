"""The GraphQL object types, each read from its read-model document
(readmodel/documents.py). Queries read the documents from Elasticsearch;
mutations answer with the same documents built from the write database right
after the commit (api/mutations/_command.py), so both show one object alike.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from enum import Enum
from typing import Any, NewType

import strawberry
from graphql import IntValueNode, StringValueNode, ValueNode
from strawberry.types.enum import has_enum_definition
from strawberry.types.scalar import ScalarDefinition

from api import resolvers
from api.node import Node
from api.policy import sees_contact_details
from domain.order import OrderStatus
from domain.product import ProductStatus
from domain.rules import MAX_SAFE_INTEGER
from readmodel.documents import CustomerDocument, OrderDocument, ProductDocument

__all__ = [
    "SCALARS",
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
    "describe_values",
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
Long = NewType("Long", int)

# The schema config's scalar_map gives each such type its GraphQL scalar
# (api/schema.py): what strawberry recommends, and a NewType stays a type to mypy.
SCALARS: dict[object, ScalarDefinition] = {
    Long: strawberry.scalar(
        name="Long",
        description="A whole number within +-(2^53 - 1), sent as a JSON number "
        "(exact in JavaScript); as input, also a string of digits.",
        serialize=_long,
        parse_value=_long,
        parse_literal=_long_literal,
    )
}


def describe_values(enum: type[Enum], descriptions: Mapping[str, str]) -> None:
    """Describe each value of an enum strawberry has taken: an enum of domain/
    or readmodel/ cannot use `strawberry.enum_value` (they import no strawberry).
    Every value needs one: a missing name fails at import, not in the docs pane."""
    if not has_enum_definition(enum):
        raise TypeError(f"{enum.__name__} is not a strawberry enum")
    definition = enum.__strawberry_definition__
    unknown = set(descriptions) - {value.name for value in definition.values}
    if unknown:
        raise KeyError(f"{enum.__name__} has no values {sorted(unknown)}")
    for value in definition.values:
        value.description = descriptions[value.name]


# The domain's own enums are the schema's: a status keeps one form from the
# client to the aggregate and back (names as GraphQL shows them, values as stored).
strawberry.enum(ProductStatus, name="ProductStatus", description="Where a product is in its life.")
describe_values(
    ProductStatus,
    {
        "DRAFT": "Being prepared: only staff see it, and it cannot be ordered yet.",
        "ACTIVE": "On sale: everyone sees it and may order it.",
        "DISCONTINUED": "No longer sold, for good: only staff see it; it cannot come back.",
    },
)
strawberry.enum(
    OrderStatus,
    name="OrderStatus",
    description="placed -> paid -> shipped; placed or paid -> cancelled.",
)
describe_values(
    OrderStatus,
    {
        "PLACED": "Ordered, not yet paid; its stock is reserved.",
        "PAID": "Paid, waiting to be shipped.",
        "SHIPPED": "Sent to the customer; final.",
        "CANCELLED": "Cancelled before shipping; its reserved stock is free again. Final.",
    },
)


@strawberry.type(description="An amount in integer minor units (cents) of a currency.")
class Money:
    amount: int = strawberry.field(
        description="Integer minor units (cents for EUR or USD): 1999 is 19.99. "
        "At most 2147483647 (2^31 - 1)."
    )
    currency: str = strawberry.field(
        description="ISO 4217 code of three letters, upper case, e.g. EUR."
    )


@strawberry.type(
    description="A product's units in the warehouse: those on hand, less those "
    "reserved by orders placed and not yet shipped or cancelled, are available."
)
class StockLevel:
    version: int = strawberry.field(
        description="The stock's own version: receiveStock and adjustStock expect this one."
    )
    on_hand: int = strawberry.field(
        description="Units in the warehouse, reserved ones included (0 to 10^9)."
    )
    reserved: int = strawberry.field(
        description="Units held for orders placed but not yet shipped or cancelled."
    )
    available: int = strawberry.field(
        description="Units that can still be ordered: onHand minus reserved."
    )
    in_stock: bool = strawberry.field(description="Whether at least one unit is available.")


# Each `from_document` takes the read model's document as readmodel/documents.py
# types it, or as Elasticsearch hands it back: the same JSON, which no type
# checker sees. The TypedDict keeps the keys read here checked.


def _time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


@strawberry.type(
    description="An article of the catalogue. Anyone sees active products; drafts "
    "and discontinued ones only staff (api/policy.py)."
)
class Product(Node):
    id: strawberry.ID = strawberry.field(
        description="Unique across every type; fixed for the product's life."
    )
    version: int = strawberry.field(description="Grows by one with each change.")
    sku: str = strawberry.field(
        description="The stock keeping unit: unique, up to 64 letters, digits, '.', '_' "
        "or '-', starting with a letter or digit."
    )
    name: str = strawberry.field(description="Up to 200 characters.")
    description: str = strawberry.field(description="Up to 5000 characters; may be empty.")
    category: str = strawberry.field(description="One category, up to 100 characters.")
    tags: list[str] = strawberry.field(description="Up to 20 tags, each up to 50 characters.")
    price: Money = strawberry.field(description="The current unit price.")
    status: ProductStatus = strawberry.field(
        description="Where the product is in its life; only ACTIVE ones can be ordered."
    )
    stock: StockLevel = strawberry.field(description="Units on hand, reserved and available.")
    units_sold: Long = strawberry.field(description="Units shipped, over the product's life.")
    created_at: datetime | None = strawberry.field(description="When it was created.")
    updated_at: datetime | None = strawberry.field(description="When it last changed.")

    @classmethod
    def from_document(cls, doc: ProductDocument | Mapping[str, Any]) -> Product:
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
            units_sold=Long(doc["units_sold"]),
            created_at=_time(doc["created_at"]),
            updated_at=_time(doc["updated_at"]),
        )


_EMAIL_HELP = "Shown to the customer themselves and to staff; null to anyone else (api/policy.py)."


@strawberry.type(description="The customer as the order shows them; empty once erased.")
class OrderCustomer:
    id: strawberry.ID = strawberry.field(description="The customer's id (see `customer`).")
    name: str | None = strawberry.field(
        description="The name when the order was placed; null once erased."
    )
    stored_email: strawberry.Private[str | None]
    erased: bool = strawberry.field(
        description="Whether the customer's personal data was erased (eraseCustomer)."
    )

    @resolvers.field(description=_EMAIL_HELP)
    def email(self, info: strawberry.Info) -> str | None:
        return self.stored_email if sees_contact_details(info.context, self.id) else None


@strawberry.type(description="One product in an order, at the price it had when ordered.")
class OrderLine:
    product_id: strawberry.ID = strawberry.field(description="The product's id.")
    sku: str = strawberry.field(description="The product's sku when the order was placed.")
    product_name: str | None = strawberry.field(
        description="The product's name when the order was placed."
    )
    quantity: int = strawberry.field(description="Units ordered, 1 to 1000000.")
    unit_price: Money = strawberry.field(description="The price when the order was placed.")
    amount: Money = strawberry.field(description="quantity times unitPrice.")


@strawberry.type(
    description="A customer's order. A customer sees their own orders; staff see "
    "every order (api/policy.py)."
)
class Order(Node):
    id: strawberry.ID = strawberry.field(description="Unique across every type.")
    version: int = strawberry.field(
        description="Grows by one with each change; payOrder, shipOrder and cancelOrder "
        "may expect it."
    )
    status: OrderStatus = strawberry.field(description="Where the order is in its life.")
    total: Money = strawberry.field(
        description="The sum of the lines' amounts, at most 2147483647 minor units."
    )
    customer: OrderCustomer = strawberry.field(description="Who placed the order.")
    lines: list[OrderLine] = strawberry.field(
        description="The products ordered, 1 to 100 lines, in the order given."
    )
    placed_at: datetime | None = strawberry.field(description="When it was placed.")
    paid_at: datetime | None = strawberry.field(description="When it was paid; null before.")
    shipped_at: datetime | None = strawberry.field(description="When it was shipped; null before.")
    cancelled_at: datetime | None = strawberry.field(
        description="When it was cancelled; null unless cancelled."
    )

    @classmethod
    def from_document(cls, doc: OrderDocument | Mapping[str, Any]) -> Order:
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


@strawberry.type(
    description="Someone who orders. A customer sees only themselves; staff see "
    "every customer (api/policy.py)."
)
class Customer(Node):
    id: strawberry.ID = strawberry.field(description="Unique across every type.")
    version: int = strawberry.field(description="Grows by one with each change.")
    name: str | None = strawberry.field(description="Up to 200 characters; null once erased.")
    stored_email: strawberry.Private[str | None]
    erased: bool = strawberry.field(
        description="Whether the personal data (name, email) was erased (eraseCustomer)."
    )
    order_count: Long | None = strawberry.field(description="Orders placed.")
    total_spent: Long | None = strawberry.field(
        description="Minor units over paid and shipped orders."
    )
    last_order_at: datetime | None = strawberry.field(
        description="When the newest order was placed; null before the first."
    )

    @resolvers.field(description=_EMAIL_HELP)
    def email(self, info: strawberry.Info) -> str | None:
        return self.stored_email if sees_contact_details(info.context, self.id) else None

    @classmethod
    def from_document(cls, doc: CustomerDocument | Mapping[str, Any]) -> Customer:
        return cls(
            id=strawberry.ID(doc["id"]),
            version=doc["version"],
            name=doc["name"],
            stored_email=doc["email"],
            erased=doc["erased"],
            order_count=Long(doc["order_count"]),
            total_spent=Long(doc["total_spent"]),
            last_order_at=_time(doc["last_order_at"]),
        )
