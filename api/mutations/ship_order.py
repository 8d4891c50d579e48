"""shipOrder: ship a paid order, taking its reserved units out of stock."""

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
class ShipOrderSuccess:
    order: Order
    consistency_token: str = strawberry.field(
        description="Pass to a query's consistencyToken to read this write."
    )
    replayed: bool = strawberry.field(
        description="True when an idempotency key answered with the first result."
    )


ShipOrderResult = Annotated[
    ShipOrderSuccess
    | InvalidInputError
    | NotFoundError
    | RuleBrokenError
    | VersionConflictError
    | ForbiddenError,
    strawberry.union("ShipOrderResult"),
]


async def ship_order(
    info: strawberry.Info[Context, None],
    input: ShipOrderInput,
    idempotency_key: str | None = None,
) -> ShipOrderResult:
    outcome = await execute(
        info,
        ShipOrder(
            order_id=str(input.order_id),
            expected_version=input.expected_version,
        ),
        idempotency_key,
        OrdersProjection(),
    )
    if isinstance(outcome, Error):
        return outcome  # type: ignore[return-value]
    return ShipOrderSuccess(
        order=Order.from_document(outcome.document),
        consistency_token=outcome.consistency_token,
        replayed=outcome.replayed,
    )
