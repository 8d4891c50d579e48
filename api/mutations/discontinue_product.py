"""discontinueProduct: take a product off sale for good."""

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
class DiscontinueProductSuccess:
    product: Product
    consistency_token: str = strawberry.field(
        description="Pass to a query's consistencyToken to read this write."
    )
    replayed: bool = strawberry.field(
        description="True when an idempotency key answered with the first result."
    )


DiscontinueProductResult = Annotated[
    DiscontinueProductSuccess
    | InvalidInputError
    | NotFoundError
    | RuleBrokenError
    | VersionConflictError
    | ForbiddenError,
    strawberry.union("DiscontinueProductResult"),
]


async def discontinue_product(
    info: strawberry.Info[Context, None],
    input: DiscontinueProductInput,
    idempotency_key: str | None = None,
) -> DiscontinueProductResult:
    outcome = await execute(
        info,
        DiscontinueProduct(
            product_id=str(input.product_id),
            expected_version=input.expected_version,
        ),
        idempotency_key,
        ProductsProjection(),
    )
    if isinstance(outcome, Error):
        return outcome  # type: ignore[return-value]
    return DiscontinueProductSuccess(
        product=Product.from_document(outcome.document),
        consistency_token=outcome.consistency_token,
        replayed=outcome.replayed,
    )
