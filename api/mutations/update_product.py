"""updateProduct: change a product's details or status; null fields stay as they are."""

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
from api.types import Product, ProductStatus
from domain.commands import UpdateProduct
from readmodel.projections import ProductsProjection


@strawberry.input
class UpdateProductInput:
    product_id: strawberry.ID
    name: str | None = None
    description: str | None = None
    category: str | None = None
    tags: list[str] | None = strawberry.field(
        default=None, description="Replaces all tags; at most 20."
    )
    status: ProductStatus | None = None
    expected_version: int | None = strawberry.field(
        default=None,
        description="Apply only if the object is still at this version (optimistic concurrency).",
    )


@strawberry.type
class UpdateProductSuccess(MutationSuccess):
    product: Product


UpdateProductResult = Annotated[
    UpdateProductSuccess
    | InvalidInputError
    | NotFoundError
    | RuleBrokenError
    | VersionConflictError
    | ForbiddenError,
    strawberry.union("UpdateProductResult"),
]


@returns_errors
async def update_product(
    info: strawberry.Info[Context, None],
    input: UpdateProductInput,
    idempotency_key: str | None = None,
) -> UpdateProductResult:
    answer = await execute(
        info,
        UpdateProduct(
            product_id=str(input.product_id),
            name=input.name,
            description=input.description,
            category=input.category,
            tags=None if input.tags is None else tuple(input.tags),
            status=input.status,
            expected_version=input.expected_version,
        ),
        idempotency_key,
        ProductsProjection(),
    )
    return answer.success(UpdateProductSuccess, product=Product.from_document(answer.document))
