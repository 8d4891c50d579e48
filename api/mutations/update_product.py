"""updateProduct: change a product's details or status; null fields stay as they are."""

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
class UpdateProductSuccess:
    product: Product
    consistency_token: str = strawberry.field(
        description="Pass to a query's consistencyToken to read this write."
    )
    replayed: bool = strawberry.field(
        description="True when an idempotency key answered with the first result."
    )


UpdateProductResult = Annotated[
    UpdateProductSuccess
    | InvalidInputError
    | NotFoundError
    | RuleBrokenError
    | VersionConflictError
    | ForbiddenError,
    strawberry.union("UpdateProductResult"),
]


async def update_product(
    info: strawberry.Info[Context, None],
    input: UpdateProductInput,
    idempotency_key: str | None = None,
) -> UpdateProductResult:
    outcome = await execute(
        info,
        UpdateProduct(
            product_id=str(input.product_id),
            name=input.name,
            description=input.description,
            category=input.category,
            tags=None if input.tags is None else tuple(input.tags),
            status=None if input.status is None else input.status.value,
            expected_version=input.expected_version,
        ),
        idempotency_key,
        ProductsProjection(),
    )
    if isinstance(outcome, Error):
        return outcome  # type: ignore[return-value]
    return UpdateProductSuccess(
        product=Product.from_document(outcome.document),
        consistency_token=outcome.consistency_token,
        replayed=outcome.replayed,
    )
