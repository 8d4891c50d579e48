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
from api.mutations._command import (
    IdempotencyKey,
    MutationSuccess,
    execute,
    expected_version,
    returns_errors,
)
from api.types import Product
from domain.commands import ChangePrice
from readmodel.projections import ProductsProjection


@strawberry.input(description="A product's new price, and optionally its currency.")
class ChangePriceInput:
    product_id: strawberry.ID = strawberry.field(
        description="The product's id (Product.id), 1-36 characters of A-Z, a-z, 0-9, '-' or '_'."
    )
    price: int = strawberry.field(
        description=(
            "In minor units of the currency (cents: 1999 is 19.99 EUR), from 1 to 2147483647."
        )
    )
    currency: str | None = strawberry.field(
        default=None,
        description=(
            "A three-letter ISO 4217 code, e.g. EUR, stored upper-cased; null keeps the "
            "current one."
        ),
    )
    expected_version: int | None = expected_version("the product (Product.version)")


@strawberry.type(description="changePrice applied (or replayed): the product with its new price.")
class ChangePriceSuccess(MutationSuccess):
    product: Product = strawberry.field(
        description=(
            "The repriced product, field for field as a query with consistencyToken shows it."
        )
    )


ChangePriceResult = Annotated[
    ChangePriceSuccess
    | InvalidInputError
    | NotFoundError
    | RuleBrokenError
    | VersionConflictError
    | ForbiddenError,
    strawberry.union(
        "ChangePriceResult",
        description=(
            "ChangePriceSuccess, or why nothing was written: InvalidInputError "
            "(PRICE_NOT_POSITIVE, PRICE_TOO_LARGE, CURRENCY_MALFORMED, a malformed id), "
            "NotFoundError (no such product), RuleBrokenError (PRODUCT_DISCONTINUED, "
            "IDEMPOTENCY_KEY_REUSED), VersionConflictError (not at expectedVersion), or "
            "ForbiddenError. Orders already placed keep the price they were placed at."
        ),
    ),
]


@returns_errors
async def change_price(
    info: strawberry.Info[Context, None],
    input: Annotated[
        ChangePriceInput,
        strawberry.argument(description="The product and its new price."),
    ],
    idempotency_key: IdempotencyKey = None,
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
