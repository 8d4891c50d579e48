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
from api.mutations._command import (
    IdempotencyKey,
    MutationSuccess,
    execute,
    expected_version,
    returns_errors,
)
from api.types import Product
from domain.commands import ReceiveStock
from readmodel.projections import ProductsProjection


@strawberry.input(description="A delivery: units to add to a product's stock on hand.")
class ReceiveStockInput:
    product_id: strawberry.ID = strawberry.field(
        description="The product's id (Product.id), 1-36 characters of A-Z, a-z, 0-9, '-' or '_'."
    )
    quantity: int = strawberry.field(
        description="Units received, from 1 to 1000000; stock on hand may not pass 1000000000."
    )
    expected_version: int | None = expected_version(
        "the product's stock (Product.stock.version, not Product.version)"
    )


@strawberry.type(description="receiveStock applied (or replayed): the product with its new stock.")
class ReceiveStockSuccess(MutationSuccess):
    product: Product = strawberry.field(
        description=(
            "The product with its stock after the delivery, field for field as a query "
            "with consistencyToken shows it."
        )
    )


ReceiveStockResult = Annotated[
    ReceiveStockSuccess
    | InvalidInputError
    | NotFoundError
    | RuleBrokenError
    | VersionConflictError
    | ForbiddenError,
    strawberry.union(
        "ReceiveStockResult",
        description=(
            "ReceiveStockSuccess, or why nothing was written: InvalidInputError "
            "(QUANTITY_NOT_POSITIVE, QUANTITY_TOO_LARGE, a malformed id), NotFoundError "
            "(no such product), RuleBrokenError (STOCK_LIMIT_EXCEEDED past 1000000000 on "
            "hand, IDEMPOTENCY_KEY_REUSED), VersionConflictError (the stock is not at "
            "expectedVersion), or ForbiddenError."
        ),
    ),
]


@returns_errors
async def receive_stock(
    info: strawberry.Info[Context, None],
    input: Annotated[
        ReceiveStockInput,
        strawberry.argument(description="The product and the units received."),
    ],
    idempotency_key: IdempotencyKey = None,
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
