"""eraseCustomer: forget a customer's personal data; their orders remain."""

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
class EraseCustomerSuccess:
    customer: Customer
    consistency_token: str = strawberry.field(
        description="Pass to a query's consistencyToken to read this write."
    )
    replayed: bool = strawberry.field(
        description="True when an idempotency key answered with the first result."
    )


EraseCustomerResult = Annotated[
    EraseCustomerSuccess
    | InvalidInputError
    | NotFoundError
    | RuleBrokenError
    | VersionConflictError
    | ForbiddenError,
    strawberry.union("EraseCustomerResult"),
]


async def erase_customer(
    info: strawberry.Info[Context, None],
    input: EraseCustomerInput,
    idempotency_key: str | None = None,
) -> EraseCustomerResult:
    outcome = await execute(
        info,
        EraseCustomer(
            customer_id=str(input.customer_id),
            expected_version=input.expected_version,
        ),
        idempotency_key,
        CustomersProjection(),
    )
    if isinstance(outcome, Error):
        return outcome  # type: ignore[return-value]
    return EraseCustomerSuccess(
        customer=Customer.from_document(outcome.document),
        consistency_token=outcome.consistency_token,
        replayed=outcome.replayed,
    )
