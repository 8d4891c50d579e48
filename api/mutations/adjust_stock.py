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
from api.mutations._command import (
    IdempotencyKey,
    MutationSuccess,
    execute,
    expected_version,
    returns_errors,
)
from api.types import Product
from domain.commands import AdjustStock
from readmodel.projections import ProductsProjection


@strawberry.input(
    description="A stock count: sets a product's units on hand to the figure counted."
)
class AdjustStockInput:
    product_id: strawberry.ID = strawberry.field(
        description="The product's id (Product.id), 1-36 characters of A-Z, a-z, 0-9, '-' or '_'."
    )
    on_hand: int = strawberry.field(
        description=(
            "The counted units on hand, from 0 to 1000000000, and not below the units "
            "orders hold reserved (RESERVED_CANNOT_EXCEED_ON_HAND)."
        )
    )
    reason: str = strawberry.field(
        default="",
        description=(
            "Why, e.g. stocktake or breakage: up to 200 characters, kept with the change."
        ),
    )
    expected_version: int | None = expected_version(
        "the product's stock (Product.stock.version, not Product.version)"
    )


@strawberry.type(
    description="adjustStock applied (or replayed): the product with its counted stock."
)
class AdjustStockSuccess(MutationSuccess):
    product: Product = strawberry.field(
        description=(
            "The product with its stock after the count, field for field as a query with "
            "consistencyToken shows it."
        )
    )


AdjustStockResult = Annotated[
    AdjustStockSuccess
    | InvalidInputError
    | NotFoundError
    | RuleBrokenError
    | VersionConflictError
    | ForbiddenError,
    strawberry.union(
        "AdjustStockResult",
        description=(
            "AdjustStockSuccess, or why nothing was written: InvalidInputError (a reason "
            "too long, a malformed id), NotFoundError (no such product), RuleBrokenError "
            "(STOCK_CANNOT_GO_NEGATIVE, STOCK_LIMIT_EXCEEDED, "
            "RESERVED_CANNOT_EXCEED_ON_HAND, IDEMPOTENCY_KEY_REUSED), "
            "VersionConflictError (the stock is not at expectedVersion), or "
            "ForbiddenError."
        ),
    ),
]


@returns_errors
async def adjust_stock(
    info: strawberry.Info[Context, None],
    input: Annotated[
        AdjustStockInput,
        strawberry.argument(description="The product, its counted stock and why."),
    ],
    idempotency_key: IdempotencyKey = None,
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
