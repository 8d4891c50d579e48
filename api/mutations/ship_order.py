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
from api.mutations._command import (
    IdempotencyKey,
    MutationSuccess,
    execute,
    expected_version,
    returns_errors,
)
from api.types import Order
from domain.commands import ShipOrder
from readmodel.projections import OrdersProjection


@strawberry.input(description="The paid order to ship.")
class ShipOrderInput:
    order_id: strawberry.ID = strawberry.field(
        description="The order's id (Order.id), 1-36 characters of A-Z, a-z, 0-9, '-' or '_'."
    )
    expected_version: int | None = expected_version("the order (Order.version)")


@strawberry.type(description="shipOrder applied (or replayed): the order, now SHIPPED.")
class ShipOrderSuccess(MutationSuccess):
    order: Order = strawberry.field(
        description=(
            "The shipped order, field for field as a query with consistencyToken shows it."
        )
    )


ShipOrderResult = Annotated[
    ShipOrderSuccess
    | InvalidInputError
    | NotFoundError
    | RuleBrokenError
    | VersionConflictError
    | ForbiddenError,
    strawberry.union(
        "ShipOrderResult",
        description=(
            "ShipOrderSuccess, or why nothing was written: InvalidInputError (a malformed"
            " id), NotFoundError (no such order), RuleBrokenError "
            "(ILLEGAL_STATUS_TRANSITION unless the order is PAID, "
            "UNITS_SOLD_LIMIT_REACHED, IDEMPOTENCY_KEY_REUSED), VersionConflictError (not"
            " at expectedVersion), or ForbiddenError."
        ),
    ),
]


@returns_errors
async def ship_order(
    info: strawberry.Info[Context, None],
    input: Annotated[
        ShipOrderInput,
        strawberry.argument(description="The order to ship."),
    ],
    idempotency_key: IdempotencyKey = None,
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
