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
from api.mutations._command import MutationSuccess, execute, returns_errors
from api.types import Product, ProductStatus
from domain.commands import CreateProduct
from readmodel.projections import ProductsProjection


@strawberry.input
class CreateProductInput:
    sku: str = strawberry.field(description="Unique; A-Z, 0-9, '.', '_', '-'. Upper-cased.")
    name: str
    price: int = strawberry.field(description="In minor units (cents), above zero.")
    currency: str = strawberry.field(description="ISO 4217, e.g. EUR.")
    description: str = ""
    category: str = ""
    tags: list[str] = strawberry.field(default_factory=list, description="At most 20.")
    status: ProductStatus = ProductStatus.ACTIVE
    initial_stock: int = strawberry.field(default=0, description="Units on hand to start with.")


@strawberry.type
class CreateProductSuccess(MutationSuccess):
    product: Product


CreateProductResult = Annotated[
    CreateProductSuccess
    | InvalidInputError
    | AlreadyExistsError
    | RuleBrokenError
    | VersionConflictError
    | ForbiddenError,
    strawberry.union("CreateProductResult"),
]


@returns_errors
async def create_product(
    info: strawberry.Info[Context, None],
    input: CreateProductInput,
    idempotency_key: str | None = None,
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
