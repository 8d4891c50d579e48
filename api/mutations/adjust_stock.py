"""adjustStock: set a product's stock on hand to a counted figure."""

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
from domain.commands import AdjustStock
from readmodel.projections import ProductsProjection


@strawberry.input
class AdjustStockInput:
    product_id: strawberry.ID
    on_hand: int = strawberry.field(description="The counted units on hand; not below reserved.")
    reason: str = strawberry.field(
        default="", description="Why, e.g. stocktake; at most 200 characters."
    )
    expected_version: int | None = strawberry.field(
        default=None,
        description="Apply only if the stock is still at this version (product.stock.version).",
    )


@strawberry.type
class AdjustStockSuccess(MutationSuccess):
    product: Product


AdjustStockResult = Annotated[
    AdjustStockSuccess
    | InvalidInputError
    | NotFoundError
    | RuleBrokenError
    | VersionConflictError
    | ForbiddenError,
    strawberry.union("AdjustStockResult"),
]


@returns_errors
async def adjust_stock(
    info: strawberry.Info[Context, None],
    input: AdjustStockInput,
    idempotency_key: str | None = None,
) -> AdjustStockResult:
    answer = await execute(
        info,
        AdjustStock(
            product_id=str(input.product_id),
            on_hand=input.on_hand,
            reason=input.reason,
            expected_version=input.expected_version,
        ),
        idempotency_key,
        ProductsProjection(),
    )
    return answer.success(AdjustStockSuccess, product=Product.from_document(answer.document))
