"""receiveStock: add delivered units to a product's stock on hand."""

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
from api.types import Product
from domain.commands import ReceiveStock
from readmodel.projections import ProductsProjection


@strawberry.input
class ReceiveStockInput:
    product_id: strawberry.ID
    quantity: int = strawberry.field(description="Units received, above zero.")
    expected_version: int | None = strawberry.field(
        default=None,
        description="Apply only if the stock is still at this version (product.stock.version).",
    )


@strawberry.type
class ReceiveStockSuccess(MutationSuccess):
    product: Product


ReceiveStockResult = Annotated[
    ReceiveStockSuccess
    | InvalidInputError
    | NotFoundError
    | RuleBrokenError
    | VersionConflictError
    | ForbiddenError,
    strawberry.union("ReceiveStockResult"),
]


@returns_errors
async def receive_stock(
    info: strawberry.Info[Context, None],
    input: ReceiveStockInput,
    idempotency_key: str | None = None,
) -> ReceiveStockResult:
    answer = await execute(
        info,
        ReceiveStock(
            product_id=str(input.product_id),
            quantity=input.quantity,
            expected_version=input.expected_version,
        ),
        idempotency_key,
        ProductsProjection(),
    )
    return answer.success(ReceiveStockSuccess, product=Product.from_document(answer.document))
