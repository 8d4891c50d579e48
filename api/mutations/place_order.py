"""placeOrder: an order for a customer, reserving stock for each line."""

from __future__ import annotations

from typing import Annotated

import strawberry

from api.context import Context
from api.errors import (
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
    RuleBrokenError,
    VersionConflictError,
)
from api.mutations._command import (
    IdempotencyKey,
    MutationSuccess,
    execute,
    returns_errors,
)
from api.types import Order
from domain.commands import OrderLineRequest, PlaceOrder
from domain.rules import MAX_ORDER_LINES
from readmodel.projections import OrdersProjection


@strawberry.input(description="One line of a new order: a product by its sku, and how many units.")
class OrderLineInput:
    sku: str = strawberry.field(
        description=(
            "The product's sku, as Product.sku (matched case-insensitively); the product "
            "must be ACTIVE."
        )
    )
    quantity: int = strawberry.field(
        description=(
            "Units to order, from 1 to 1000000, and no more than the product has "
            "available (INSUFFICIENT_STOCK)."
        )
    )


@strawberry.input(
    description=(
        "A new order: who orders, and which products in what quantities. Prices are the "
        "products' current ones."
    )
)
class PlaceOrderInput:
    customer_id: strawberry.ID = strawberry.field(
        description="Who orders (Customer.id); a customer may order only for themself."
    )
    lines: list[OrderLineInput] = strawberry.field(
        description=(
            "1 to 100 lines, one per sku, all priced in one currency; the total may not "
            "pass 2147483647 minor units."
        )
    )


@strawberry.type(
    description="placeOrder applied (or replayed): the new order, PLACED, its stock reserved."
)
class PlaceOrderSuccess(MutationSuccess):
    order: Order = strawberry.field(
        description="The new order, field for field as a query with consistencyToken shows it."
    )


PlaceOrderResult = Annotated[
    PlaceOrderSuccess
    | InvalidInputError
    | NotFoundError
    | RuleBrokenError
    | VersionConflictError
    | ForbiddenError,
    strawberry.union(
        "PlaceOrderResult",
        description=(
            "PlaceOrderSuccess, or why nothing was written: InvalidInputError "
            "(ORDER_LINES_OUT_OF_BOUNDS, DUPLICATE_SKU, SKU_MALFORMED, "
            "QUANTITY_NOT_POSITIVE, QUANTITY_TOO_LARGE, a malformed id), NotFoundError "
            "(no such customer or sku), RuleBrokenError (INSUFFICIENT_STOCK, "
            "PRODUCT_NOT_ORDERABLE, MIXED_CURRENCIES, ORDER_TOTAL_TOO_LARGE, "
            "CUSTOMER_ERASED, IDEMPOTENCY_KEY_REUSED), VersionConflictError when "
            "concurrent writers kept winning for the same stock, or ForbiddenError (a "
            "customer ordering for someone else)."
        ),
    ),
]


@returns_errors
async def place_order(
    info: strawberry.Info[Context, None],
    input: Annotated[
        PlaceOrderInput,
        strawberry.argument(description="The customer and the order's lines."),
    ],
    idempotency_key: IdempotencyKey = None,
) -> PlaceOrderResult:
    if len(input.lines) > MAX_ORDER_LINES:
        return InvalidInputError(
            code="ORDER_LINES_OUT_OF_BOUNDS",
            field="lines",
            message=f"an order has from 1 to {MAX_ORDER_LINES} lines",
        )
    answer = await execute(
        info,
        PlaceOrder(
            customer_id=str(input.customer_id),
            lines=tuple(
                OrderLineRequest(sku=line.sku, quantity=line.quantity) for line in input.lines
            ),
        ),
        idempotency_key,
        OrdersProjection(),
    )
    return answer.success(PlaceOrderSuccess, order=Order.from_document(answer.document))
