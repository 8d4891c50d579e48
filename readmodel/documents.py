"""The read models' documents, each declared once, with its one builder.

A document is what the projection writes to Elasticsearch, what a query
reads back and what a mutation answers with: `readmodel/indexes.py` maps
these fields (a unit test holds the mapping to the types), the projections
fill them through the builders below, and `api/types.py` reads them. Derived
fields (`available`, `in_stock`, the sort keys, a line's amount) are
computed here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import NotRequired, TypedDict

__all__ = [
    "CustomerDocument",
    "Document",
    "NameSuggest",
    "OrderCustomerDocument",
    "OrderDocument",
    "OrderLineDocument",
    "ProductDocument",
    "customer_document",
    "order_document",
    "order_line_document",
    "product_document",
]


def _iso(value: datetime | None) -> str | None:
    # SQLite hands back naive datetimes; the write side stores UTC.
    if value is None:
        return None
    return (value.replace(tzinfo=UTC) if value.tzinfo is None else value).isoformat()


class NameSuggest(TypedDict):
    input: list[str]


class ProductDocument(TypedDict):
    id: str
    version: int
    # The newest outbox position that touched the document: its external
    # version in Elasticsearch. Set by the projection, absent in a mutation's answer.
    position: NotRequired[int]
    sku: str
    name: str
    name_sort: str
    name_suggest: NameSuggest
    description: str
    category: str
    tags: list[str]
    price: int
    currency: str
    status: str
    stock_version: int
    on_hand: int
    reserved: int
    available: int
    in_stock: bool
    units_sold: int
    created_at: str | None
    updated_at: str | None


def product_document(
    *,
    id: str,
    version: int,
    sku: str,
    name: str,
    description: str,
    category: str,
    tags: Iterable[str],
    price: int,
    currency: str,
    status: str,
    created_at: datetime | None,
    updated_at: datetime | None,
    stock_version: int | None,
    on_hand: int | None,
    reserved: int | None,
    units_sold: int | None,
) -> ProductDocument:
    """A product with its stock embedded; no stock row yet reads as none on hand."""
    on_hand, reserved = on_hand or 0, reserved or 0
    return {
        "id": id,
        "version": version,
        "sku": sku,
        "name": name,
        "name_sort": name.lower(),
        "name_suggest": {"input": [name, *name.split()]},
        "description": description,
        "category": category,
        "tags": list(tags),
        "price": price,
        "currency": currency,
        "status": status,
        "stock_version": stock_version or 0,
        "on_hand": on_hand,
        "reserved": reserved,
        "available": on_hand - reserved,
        "in_stock": on_hand - reserved > 0,
        "units_sold": units_sold or 0,
        "created_at": _iso(created_at),
        "updated_at": _iso(updated_at),
    }


class OrderCustomerDocument(TypedDict):
    id: str
    name: str | None
    email: str | None
    erased: bool


class OrderLineDocument(TypedDict):
    product_id: str
    sku: str
    product_name: str | None
    quantity: int
    unit_price: int
    amount: int


class OrderDocument(TypedDict):
    id: str
    version: int
    position: NotRequired[int]
    status: str
    currency: str
    total: int
    placed_at: str | None
    paid_at: str | None
    shipped_at: str | None
    cancelled_at: str | None
    updated_at: str | None
    customer: OrderCustomerDocument
    lines: list[OrderLineDocument]
    line_count: int


def order_line_document(
    *, product_id: str, sku: str, product_name: str | None, quantity: int, unit_price: int
) -> OrderLineDocument:
    return {
        "product_id": product_id,
        "sku": sku,
        "product_name": product_name,
        "quantity": quantity,
        "unit_price": unit_price,
        "amount": quantity * unit_price,
    }


def order_document(
    *,
    id: str,
    version: int,
    status: str,
    currency: str,
    total: int,
    placed_at: datetime | None,
    paid_at: datetime | None,
    shipped_at: datetime | None,
    cancelled_at: datetime | None,
    updated_at: datetime | None,
    customer: OrderCustomerDocument,
    lines: Iterable[OrderLineDocument],
) -> OrderDocument:
    """An order embedding its customer's name and email and each line's product
    name, so an order list needs one query."""
    lines = list(lines)
    return {
        "id": id,
        "version": version,
        "status": status,
        "currency": currency,
        "total": total,
        "placed_at": _iso(placed_at),
        "paid_at": _iso(paid_at),
        "shipped_at": _iso(shipped_at),
        "cancelled_at": _iso(cancelled_at),
        "updated_at": _iso(updated_at),
        "customer": customer,
        "lines": lines,
        "line_count": len(lines),
    }


class CustomerDocument(TypedDict):
    id: str
    version: int
    position: NotRequired[int]
    name: str | None
    name_sort: str | None
    email: str | None
    erased: bool
    order_count: int
    total_spent: int
    last_order_at: str | None
    created_at: str | None
    updated_at: str | None


def customer_document(
    *,
    id: str,
    version: int,
    name: str | None,
    email: str | None,
    erased: bool,
    order_count: int | None,
    total_spent: int | None,
    last_order_at: datetime | None,
    created_at: datetime | None,
    updated_at: datetime | None,
) -> CustomerDocument:
    """A customer with lifetime figures that come from their orders; an erased
    customer keeps the figures and loses the name and email."""
    return {
        "id": id,
        "version": version,
        "name": name,
        "name_sort": None if name is None else name.lower(),
        "email": email,
        "erased": bool(erased),
        "order_count": order_count or 0,
        "total_spent": int(total_spent or 0),
        "last_order_at": _iso(last_order_at),
        "created_at": _iso(created_at),
        "updated_at": _iso(updated_at),
    }


Document = ProductDocument | OrderDocument | CustomerDocument
