"""createProduct: a new product, with its stock, active or as a draft."""

from __future__ import annotations

from typing import Annotated

import strawberry

from api.context import Context
from api.errors import (
    AlreadyExistsError,
    ForbiddenError,
    InvalidInputError,
    RuleBrokenError,
    VersionConflictError,
)
from api.mutations._command import (
    IdempotencyKey,
    MutationSuccess,
    execute,
    returns_errors,
)
from api.types import Product, ProductStatus
from domain.commands import CreateProduct
from readmodel.projections import ProductsProjection


@strawberry.input(
    description=(
        "A new product: its sku, name, price and currency are required, the rest have defaults."
    )
)
class CreateProductInput:
    sku: str = strawberry.field(
        description=(
            "Unique stock-keeping unit: 1-64 characters of A-Z, 0-9, '.', '_' or '-', "
            "starting with a letter or digit; stored upper-cased. Taken: "
            "AlreadyExistsError SKU_TAKEN."
        )
    )
    name: str = strawberry.field(description="Shown to customers: 1-200 characters, trimmed.")
    price: int = strawberry.field(
        description=(
            "In minor units of the currency (cents: 1999 is 19.99 EUR), from 1 to 2147483647."
        )
    )
    currency: str = strawberry.field(
        description="A three-letter ISO 4217 code, e.g. EUR; stored upper-cased."
    )
    description: str = strawberry.field(
        default="",
        description=(
            "Free text, up to 5000 characters; the one field that keeps tabs and line breaks."
        ),
    )
    category: str = strawberry.field(
        default="",
        description=(
            "Up to 100 characters, stored lower-cased; products are filtered and faceted by it."
        ),
    )
    tags: list[str] = strawberry.field(
        default_factory=list,
        description="At most 20 distinct tags of up to 50 characters each, stored lower-cased.",
    )
    status: ProductStatus = strawberry.field(
        default=ProductStatus.ACTIVE,
        description=(
            "ACTIVE (on sale, the default) or DRAFT (not orderable yet); DISCONTINUED is refused."
        ),
    )
    initial_stock: int = strawberry.field(
        default=0, description="Units on hand to start with, from 0 (the default) to 1000000."
    )


@strawberry.type(description="createProduct applied (or replayed): the new product.")
class CreateProductSuccess(MutationSuccess):
    product: Product = strawberry.field(
        description="The new product, field for field as a query with consistencyToken shows it."
    )


CreateProductResult = Annotated[
    CreateProductSuccess
    | InvalidInputError
    | AlreadyExistsError
    | RuleBrokenError
    | VersionConflictError
    | ForbiddenError,
    strawberry.union(
        "CreateProductResult",
        description=(
            "CreateProductSuccess, or why nothing was written: InvalidInputError (a "
            "malformed or out-of-range value), AlreadyExistsError (SKU_TAKEN), "
            "RuleBrokenError (PRODUCT_DISCONTINUED for a status of DISCONTINUED, "
            "STOCK_LIMIT_EXCEEDED, IDEMPOTENCY_KEY_REUSED), VersionConflictError when "
            "concurrent writers kept winning, or ForbiddenError."
        ),
    ),
]


@returns_errors
async def create_product(
    info: strawberry.Info[Context, None],
    input: Annotated[
        CreateProductInput,
        strawberry.argument(description="The product to create."),
    ],
    idempotency_key: IdempotencyKey = None,
) -> CreateProductResult:
    answer = await execute(
        info,
        CreateProduct(
            sku=input.sku,
            name=input.name,
            price=input.price,
            currency=input.currency,
            description=input.description,
            category=input.category,
            tags=tuple(input.tags),
            status=input.status,
            initial_stock=input.initial_stock,
        ),
        idempotency_key,
        ProductsProjection(),
    )
    return answer.success(CreateProductSuccess, product=Product.from_document(answer.document))
