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
from api.mutations._command import MutationSuccess, execute, returns_errors
from api.types import Product
from domain.commands import DiscontinueProduct
from readmodel.projections import ProductsProjection


@strawberry.input
class DiscontinueProductInput:
    product_id: strawberry.ID
    expected_version: int | None = strawberry.field(
        default=None,
        description="Apply only if the object is still at this version (optimistic concurrency).",
    )


@strawberry.type
class DiscontinueProductSuccess(MutationSuccess):
    product: Product


DiscontinueProductResult = Annotated[
    DiscontinueProductSuccess
    | InvalidInputError
    | NotFoundError
    | RuleBrokenError
    | VersionConflictError
    | ForbiddenError,
    strawberry.union("DiscontinueProductResult"),
]


@returns_errors
async def discontinue_product(
    info: strawberry.Info[Context, None],
    input: DiscontinueProductInput,
    idempotency_key: str | None = None,
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
