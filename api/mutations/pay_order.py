"""payOrder: mark a placed order as paid."""

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
class PayOrderSuccess:
    order: Order
    consistency_token: str = strawberry.field(
        description="Pass to a query's consistencyToken to read this write."
    )
    replayed: bool = strawberry.field(
        description="True when an idempotency key answered with the first result."
    )


PayOrderResult = Annotated[
    PayOrderSuccess
    | InvalidInputError
    | NotFoundError
    | RuleBrokenError
    | VersionConflictError
    | ForbiddenError,
    strawberry.union("PayOrderResult"),
]


async def pay_order(
    info: strawberry.Info[Context, None],
    input: PayOrderInput,
    idempotency_key: str | None = None,
) -> PayOrderResult:
    outcome = await execute(
        info,
        PayOrder(
            order_id=str(input.order_id),
            expected_version=input.expected_version,
        ),
        idempotency_key,
        OrdersProjection(),
    )
    if isinstance(outcome, Error):
        return outcome  # type: ignore[return-value]
    return PayOrderSuccess(
        order=Order.from_document(outcome.document),
        consistency_token=outcome.consistency_token,
        replayed=outcome.replayed,
    )
