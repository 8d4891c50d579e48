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
from api.mutations._command import MutationSuccess, execute, returns_errors
from api.types import Order
from domain.commands import OrderLineRequest, PlaceOrder
from domain.rules import MAX_ORDER_LINES
from readmodel.projections import OrdersProjection


@strawberry.input
class OrderLineInput:
    sku: str
    quantity: int = strawberry.field(description="Units to order, above zero.")


@strawberry.input
class PlaceOrderInput:
    customer_id: strawberry.ID
    lines: list[OrderLineInput] = strawberry.field(description="1 to 100 lines; one per sku.")


@strawberry.type
class PlaceOrderSuccess(MutationSuccess):
    order: Order


PlaceOrderResult = Annotated[
    PlaceOrderSuccess
    | InvalidInputError
    | NotFoundError
    | RuleBrokenError
    | VersionConflictError
    | ForbiddenError,
    strawberry.union("PlaceOrderResult"),
]


@returns_errors
async def place_order(
    info: strawberry.Info[Context, None],
    input: PlaceOrderInput,
    idempotency_key: str | None = None,
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
