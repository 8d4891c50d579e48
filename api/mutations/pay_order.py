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
from api.mutations._command import MutationSuccess, execute, returns_errors
from api.types import Order
from domain.commands import PayOrder
from readmodel.projections import OrdersProjection


@strawberry.input
class PayOrderInput:
    order_id: strawberry.ID
    expected_version: int | None = strawberry.field(
        default=None,
        description="Apply only if the object is still at this version (optimistic concurrency).",
    )


@strawberry.type
class PayOrderSuccess(MutationSuccess):
    order: Order


PayOrderResult = Annotated[
    PayOrderSuccess
    | InvalidInputError
    | NotFoundError
    | RuleBrokenError
    | VersionConflictError
    | ForbiddenError,
    strawberry.union("PayOrderResult"),
]


@returns_errors
async def pay_order(
    info: strawberry.Info[Context, None],
    input: PayOrderInput,
    idempotency_key: str | None = None,
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
