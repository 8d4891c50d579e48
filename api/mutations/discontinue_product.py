"""discontinueProduct: take a product off sale for good."""

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
from domain.commands import DiscontinueProduct
from readmodel.projections import ProductsProjection


@strawberry.input(description="The product to take off sale for good.")
class DiscontinueProductInput:
    product_id: strawberry.ID = strawberry.field(
        description="The product's id (Product.id), 1-36 characters of A-Z, a-z, 0-9, '-' or '_'."
    )
    expected_version: int | None = expected_version("the product (Product.version)")


@strawberry.type(
    description="discontinueProduct applied (or replayed): the product, now DISCONTINUED."
)
class DiscontinueProductSuccess(MutationSuccess):
    product: Product = strawberry.field(
        description=(
            "The discontinued product, field for field as a query with consistencyToken shows it."
        )
    )


DiscontinueProductResult = Annotated[
    DiscontinueProductSuccess
    | InvalidInputError
    | NotFoundError
    | RuleBrokenError
    | VersionConflictError
    | ForbiddenError,
    strawberry.union(
        "DiscontinueProductResult",
        description=(
            "DiscontinueProductSuccess, or why nothing was written: InvalidInputError (a "
            "malformed id), NotFoundError (no such product), RuleBrokenError "
            "(IDEMPOTENCY_KEY_REUSED), VersionConflictError (not at expectedVersion), or "
            "ForbiddenError. Discontinuing a discontinued product succeeds and writes "
            "nothing."
        ),
    ),
]


@returns_errors
async def discontinue_product(
    info: strawberry.Info[Context, None],
    input: Annotated[
        DiscontinueProductInput,
        strawberry.argument(description="The product to discontinue."),
    ],
    idempotency_key: IdempotencyKey = None,
) -> DiscontinueProductResult:
    answer = await execute(
        info,
        DiscontinueProduct(
            product_id=str(input.product_id),
            expected_version=input.expected_version,
        ),
        idempotency_key,
        ProductsProjection(),
    )
    return answer.success(DiscontinueProductSuccess, product=Product.from_document(answer.document))
