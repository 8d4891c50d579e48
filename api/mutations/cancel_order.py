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
from api.mutations._command import MutationSuccess, execute, returns_errors
from api.types import Order
from domain.commands import CancelOrder
from readmodel.projections import OrdersProjection


@strawberry.input
class CancelOrderInput:
    order_id: strawberry.ID
    reason: str = strawberry.field(default="", description="At most 200 characters.")
    expected_version: int | None = strawberry.field(
        default=None,
        description="Apply only if the object is still at this version (optimistic concurrency).",
    )


@strawberry.type
class CancelOrderSuccess(MutationSuccess):
    order: Order


CancelOrderResult = Annotated[
    CancelOrderSuccess
    | InvalidInputError
    | NotFoundError
    | RuleBrokenError
    | VersionConflictError
    | ForbiddenError,
    strawberry.union("CancelOrderResult"),
]


@returns_errors
async def cancel_order(
    info: strawberry.Info[Context, None],
    input: CancelOrderInput,
    idempotency_key: str | None = None,
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
