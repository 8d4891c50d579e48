"""shipOrder: ship a paid order, taking its reserved units out of stock."""

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
from domain.commands import ShipOrder
from readmodel.projections import OrdersProjection


@strawberry.input
class ShipOrderInput:
    order_id: strawberry.ID
    expected_version: int | None = strawberry.field(
        default=None,
        description="Apply only if the object is still at this version (optimistic concurrency).",
    )


@strawberry.type
class ShipOrderSuccess(MutationSuccess):
    order: Order


ShipOrderResult = Annotated[
    ShipOrderSuccess
    | InvalidInputError
    | NotFoundError
    | RuleBrokenError
    | VersionConflictError
    | ForbiddenError,
    strawberry.union("ShipOrderResult"),
]


@returns_errors
async def ship_order(
    info: strawberry.Info[Context, None],
    input: ShipOrderInput,
    idempotency_key: str | None = None,
) -> ShipOrderResult:
    answer = await execute(
        info,
        ShipOrder(
            order_id=str(input.order_id),
            expected_version=input.expected_version,
        ),
        idempotency_key,
        OrdersProjection(),
    )
    return answer.success(ShipOrderSuccess, order=Order.from_document(answer.document))
