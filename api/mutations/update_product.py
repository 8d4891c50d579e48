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
from api.mutations._command import (
    IdempotencyKey,
    MutationSuccess,
    execute,
    expected_version,
    returns_errors,
)
from api.types import Product, ProductStatus
from domain.commands import UpdateProduct
from readmodel.projections import ProductsProjection


@strawberry.input(
    description=(
        "What to change about a product: a null field stays as it is. A change that "
        "changes nothing writes nothing and keeps the version."
    )
)
class UpdateProductInput:
    product_id: strawberry.ID = strawberry.field(
        description="The product's id (Product.id), 1-36 characters of A-Z, a-z, 0-9, '-' or '_'."
    )
    name: str | None = strawberry.field(
        default=None, description="A new name, 1-200 characters; null keeps it."
    )
    description: str | None = strawberry.field(
        default=None,
        description=(
            "A new description, up to 5000 characters (tabs and line breaks kept); null keeps it."
        ),
    )
    category: str | None = strawberry.field(
        default=None,
        description="A new category, up to 100 characters, stored lower-cased; null keeps it.",
    )
    tags: list[str] | None = strawberry.field(
        default=None,
        description=(
            "Replaces all tags: at most 20 distinct, up to 50 characters each, stored "
            "lower-cased; [] removes them all, null keeps them."
        ),
    )
    status: ProductStatus | None = strawberry.field(
        default=None,
        description=(
            "DRAFT to ACTIVE puts it on sale; ACTIVE cannot go back to DRAFT, and "
            "DISCONTINUED is discontinueProduct's. Null keeps it."
        ),
    )
    expected_version: int | None = expected_version("the product (Product.version)")


@strawberry.type(description="updateProduct applied (or replayed): the product as it is now.")
class UpdateProductSuccess(MutationSuccess):
    product: Product = strawberry.field(
        description=(
            "The updated product, field for field as a query with consistencyToken shows it."
        )
    )


UpdateProductResult = Annotated[
    UpdateProductSuccess
    | InvalidInputError
    | NotFoundError
    | RuleBrokenError
    | VersionConflictError
    | ForbiddenError,
    strawberry.union(
        "UpdateProductResult",
        description=(
            "UpdateProductSuccess, or why nothing was written: InvalidInputError (a "
            "malformed or out-of-range value), NotFoundError (no such product), "
            "RuleBrokenError (PRODUCT_DISCONTINUED, ACTIVE_CANNOT_RETURN_TO_DRAFT, "
            "DISCONTINUE_WITH_ITS_OWN_COMMAND, IDEMPOTENCY_KEY_REUSED), "
            "VersionConflictError (not at expectedVersion), or ForbiddenError."
        ),
    ),
]


@returns_errors
async def update_product(
    info: strawberry.Info[Context, None],
    input: Annotated[
        UpdateProductInput,
        strawberry.argument(description="The product and the fields to change."),
    ],
    idempotency_key: IdempotencyKey = None,
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
