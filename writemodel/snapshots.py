"""Aggregates as JSON-ready dicts: what a mutation returns, and what an
idempotency key stores as its first result."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from domain.customer import Customer
from domain.order import Order
from domain.product import Product
from domain.stock import Stock

__all__ = ["customer_snapshot", "order_snapshot", "product_snapshot"]


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def product_snapshot(product: Product, stock: Stock | None) -> dict[str, Any]:
    return {
        "id": product.id,
        "version": product.version,
        "sku": product.sku,
        "name": product.name,
        "description": product.description,
        "category": product.category,
        "tags": list(product.tags),
        "price": product.price,
        "currency": product.currency,
        "status": product.status.value,
        "created_at": _iso(product.created_at),
        "stock": None
        if stock is None
        else {
            "version": stock.version,
            "on_hand": stock.on_hand,
            "reserved": stock.reserved,
            "available": stock.available,
            "units_sold": stock.units_sold,
        },
    }


def customer_snapshot(customer: Customer) -> dict[str, Any]:
    return {
        "id": customer.id,
        "version": customer.version,
        "email": customer.email,
        "name": customer.name,
        "erased": customer.erased,
    }


def order_snapshot(order: Order) -> dict[str, Any]:
    return {
        "id": order.id,
        "version": order.version,
        "customer_id": order.customer_id,
        "status": order.status.value,
        "currency": order.currency,
        "total": order.total,
        "lines": [
            {
                "product_id": ln.product_id,
                "sku": ln.sku,
                "quantity": ln.quantity,
                "unit_price": ln.unit_price,
            }
            for ln in order.lines
        ],
        "placed_at": _iso(order.placed_at),
        "paid_at": _iso(order.paid_at),
        "shipped_at": _iso(order.shipped_at),
        "cancelled_at": _iso(order.cancelled_at),
    }
