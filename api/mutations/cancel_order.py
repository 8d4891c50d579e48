"""cancelOrder: cancel a placed or paid order, releasing its reserved stock."""

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
from domain.commands import CancelOrder
from readmodel.projections import OrdersProjection


@strawberry.input(description="The order to cancel, and why.")
class CancelOrderInput:
    order_id: strawberry.ID = strawberry.field(
        description="The order's id (Order.id), 1-36 characters of A-Z, a-z, 0-9, '-' or '_'."
    )
    reason: str = strawberry.field(
        default="", description="Why it was cancelled: up to 200 characters, kept with the order."
    )
    expected_version: int | None = expected_version("the order (Order.version)")


@strawberry.type(
    description=(
        "cancelOrder applied (or replayed): the order, now CANCELLED, its reserved stock released."
    )
)
class CancelOrderSuccess(MutationSuccess):
    order: Order = strawberry.field(
        description=(
            "The cancelled order, field for field as a query with consistencyToken shows it."
        )
    )


CancelOrderResult = Annotated[
    CancelOrderSuccess
    | InvalidInputError
    | NotFoundError
    | RuleBrokenError
    | VersionConflictError
    | ForbiddenError,
    strawberry.union(
        "CancelOrderResult",
        description=(
            "CancelOrderSuccess, or why nothing was written: InvalidInputError (a reason "
            "too long, a malformed id), NotFoundError (no such order), RuleBrokenError "
            "(ILLEGAL_STATUS_TRANSITION unless the order is PLACED or PAID, "
            "IDEMPOTENCY_KEY_REUSED), VersionConflictError (not at expectedVersion), or "
            "ForbiddenError (a customer cancelling an order not theirs, or paid)."
        ),
    ),
]


@returns_errors
async def cancel_order(
    info: strawberry.Info[Context, None],
    input: Annotated[
        CancelOrderInput,
        strawberry.argument(description="The order to cancel."),
    ],
    idempotency_key: IdempotencyKey = None,
) -> CancelOrderResult:
    answer = await execute(
        info,
        CancelOrder(
            order_id=str(input.order_id),
            reason=input.reason,
            expected_version=input.expected_version,
        ),
        idempotency_key,
        OrdersProjection(),
    )
    return answer.success(CancelOrderSuccess, order=Order.from_document(answer.document))
