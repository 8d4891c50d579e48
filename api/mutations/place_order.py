"""placeOrder: an order for a customer, reserving stock for each line."""

from __future__ import annotations

from typing import Annotated

import strawberry

from api.context import Context
from api.errors import (
    Error,
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
    RuleBrokenError,
    VersionConflictError,
)
from api.mutations._command import execute
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
class PlaceOrderSuccess:
    order: Order
    consistency_token: str = strawberry.field(
        description="Pass to a query's consistencyToken to read this write."
    )
    replayed: bool = strawberry.field(
        description="True when an idempotency key answered with the first result."
    )


PlaceOrderResult = Annotated[
    PlaceOrderSuccess
    | InvalidInputError
    | NotFoundError
    | RuleBrokenError
    | VersionConflictError
    | ForbiddenError,
    strawberry.union("PlaceOrderResult"),
]


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
    outcome = await execute(
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
    if isinstance(outcome, Error):
        return outcome  # type: ignore[return-value]
    return PlaceOrderSuccess(
        order=Order.from_document(outcome.document),
        consistency_token=outcome.consistency_token,
        replayed=outcome.replayed,
    )
