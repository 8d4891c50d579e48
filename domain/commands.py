"""Commands: what a client asks for, in the imperative, as plain data.

`expected_version`, where a command has it, is optimistic concurrency: the
command applies only if the aggregate is still at that version.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from domain.product import ProductStatus

__all__ = [
    "AdjustStock",
    "CancelOrder",
    "ChangePrice",
    "Command",
    "CreateProduct",
    "DiscontinueProduct",
    "EraseCustomer",
    "OrderLineRequest",
    "PayOrder",
    "PlaceOrder",
    "ReceiveStock",
    "RegisterCustomer",
    "ShipOrder",
    "UpdateProduct",
]


@dataclass(frozen=True)
class Command:
    pass


@dataclass(frozen=True)
class CreateProduct(Command):
    sku: str
    name: str
    price: int
    currency: str
    description: str = ""
    category: str = ""
    tags: tuple[str, ...] = ()
    # The API passes the enum itself; a script may still name a status by its text,
    # which the handler checks.
    status: ProductStatus | str = ProductStatus.ACTIVE
    initial_stock: int = 0


@dataclass(frozen=True)
class UpdateProduct(Command):
    product_id: str
    name: str | None = None
    description: str | None = None
    category: str | None = None
    tags: tuple[str, ...] | None = None
    status: ProductStatus | str | None = None
    expected_version: int | None = None


@dataclass(frozen=True)
class ChangePrice(Command):
    product_id: str
    price: int
    currency: str | None = None
    expected_version: int | None = None


@dataclass(frozen=True)
class DiscontinueProduct(Command):
    product_id: str
    expected_version: int | None = None


@dataclass(frozen=True)
class ReceiveStock(Command):
    product_id: str
    quantity: int
    expected_version: int | None = None


@dataclass(frozen=True)
class AdjustStock(Command):
    product_id: str
    on_hand: int
    reason: str = ""
    expected_version: int | None = None


@dataclass(frozen=True)
class RegisterCustomer(Command):
    email: str
    name: str


@dataclass(frozen=True)
class EraseCustomer(Command):
    customer_id: str
    expected_version: int | None = None


@dataclass(frozen=True)
class OrderLineRequest:
    sku: str
    quantity: int


@dataclass(frozen=True)
class PlaceOrder(Command):
    customer_id: str
    lines: tuple[OrderLineRequest, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class PayOrder(Command):
    order_id: str
    expected_version: int | None = None


@dataclass(frozen=True)
class ShipOrder(Command):
    order_id: str
    expected_version: int | None = None


@dataclass(frozen=True)
class CancelOrder(Command):
    order_id: str
    reason: str = ""
    expected_version: int | None = None
