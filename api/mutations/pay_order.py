"""payOrder: mark a placed order as paid."""

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
from domain.commands import PayOrder
from readmodel.projections import OrdersProjection


@strawberry.input(description="The placed order to mark as paid.")
class PayOrderInput:
    order_id: strawberry.ID = strawberry.field(
        description="The order's id (Order.id), 1-36 characters of A-Z, a-z, 0-9, '-' or '_'."
    )
    expected_version: int | None = expected_version("the order (Order.version)")


@strawberry.type(description="payOrder applied (or replayed): the order, now PAID.")
class PayOrderSuccess(MutationSuccess):
    order: Order = strawberry.field(
        description="The paid order, field for field as a query with consistencyToken shows it."
    )


PayOrderResult = Annotated[
    PayOrderSuccess
    | InvalidInputError
    | NotFoundError
    | RuleBrokenError
    | VersionConflictError
    | ForbiddenError,
    strawberry.union(
        "PayOrderResult",
        description=(
            "PayOrderSuccess, or why nothing was written: InvalidInputError (a malformed "
            "id), NotFoundError (no such order), RuleBrokenError "
            "(ILLEGAL_STATUS_TRANSITION unless the order is PLACED, "
            "IDEMPOTENCY_KEY_REUSED), VersionConflictError (not at expectedVersion), or "
            "ForbiddenError."
        ),
    ),
]


@returns_errors
async def pay_order(
    info: strawberry.Info[Context, None],
    input: Annotated[
        PayOrderInput,
        strawberry.argument(description="The order to mark as paid."),
    ],
    idempotency_key: IdempotencyKey = None,
) -> PayOrderResult:
    answer = await execute(
        info,
        PayOrder(
            order_id=str(input.order_id),
            expected_version=input.expected_version,
        ),
        idempotency_key,
        OrdersProjection(),
    )
    return answer.success(PayOrderSuccess, order=Order.from_document(answer.document))
