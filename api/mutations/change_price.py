"""changePrice: set a product's price, and optionally its currency."""

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
from domain.commands import ChangePrice
from readmodel.projections import ProductsProjection


@strawberry.input
class ChangePriceInput:
    product_id: strawberry.ID
    price: int = strawberry.field(description="In minor units (cents), above zero.")
    currency: str | None = strawberry.field(
        default=None, description="ISO 4217, e.g. EUR; null keeps the current one."
    )
    expected_version: int | None = strawberry.field(
        default=None,
        description="Apply only if the object is still at this version (optimistic concurrency).",
    )


@strawberry.type
class ChangePriceSuccess(MutationSuccess):
    product: Product


ChangePriceResult = Annotated[
    ChangePriceSuccess
    | InvalidInputError
    | NotFoundError
    | RuleBrokenError
    | VersionConflictError
    | ForbiddenError,
    strawberry.union("ChangePriceResult"),
]


@returns_errors
async def change_price(
    info: strawberry.Info[Context, None],
    input: ChangePriceInput,
    idempotency_key: str | None = None,
) -> ChangePriceResult:
    answer = await execute(
        info,
        ChangePrice(
            product_id=str(input.product_id),
            price=input.price,
            currency=input.currency,
            expected_version=input.expected_version,
        ),
        idempotency_key,
        ProductsProjection(),
    )
    return answer.success(ChangePriceSuccess, product=Product.from_document(answer.document))
