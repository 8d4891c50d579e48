"""eraseCustomer: forget a customer's personal data; their orders remain."""

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
from api.types import Customer
from domain.commands import EraseCustomer
from readmodel.projections import CustomersProjection


@strawberry.input
class EraseCustomerInput:
    customer_id: strawberry.ID
    expected_version: int | None = strawberry.field(
        default=None,
        description="Apply only if the object is still at this version (optimistic concurrency).",
    )


@strawberry.type
class EraseCustomerSuccess(MutationSuccess):
    customer: Customer


EraseCustomerResult = Annotated[
    EraseCustomerSuccess
    | InvalidInputError
    | NotFoundError
    | RuleBrokenError
    | VersionConflictError
    | ForbiddenError,
    strawberry.union("EraseCustomerResult"),
]


@returns_errors
async def erase_customer(
    info: strawberry.Info[Context, None],
    input: EraseCustomerInput,
    idempotency_key: str | None = None,
) -> EraseCustomerResult:
    answer = await execute(
        info,
        EraseCustomer(
            customer_id=str(input.customer_id),
            expected_version=input.expected_version,
        ),
        idempotency_key,
        CustomersProjection(),
    )
    return answer.success(EraseCustomerSuccess, customer=Customer.from_document(answer.document))
