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
from api.mutations._command import (
    IdempotencyKey,
    MutationSuccess,
    execute,
    expected_version,
    returns_errors,
)
from api.types import Customer
from domain.commands import EraseCustomer
from readmodel.projections import CustomersProjection


@strawberry.input(description="The customer whose personal data (name, email) to erase.")
class EraseCustomerInput:
    customer_id: strawberry.ID = strawberry.field(
        description="The customer's id (Customer.id); a customer may name only their own."
    )
    expected_version: int | None = expected_version("the customer (Customer.version)")


@strawberry.type(
    description="eraseCustomer applied (or replayed): the customer, now without name or email."
)
class EraseCustomerSuccess(MutationSuccess):
    customer: Customer = strawberry.field(
        description=(
            "The erased customer, field for field as a query with consistencyToken shows "
            "it; their orders remain."
        )
    )


EraseCustomerResult = Annotated[
    EraseCustomerSuccess
    | InvalidInputError
    | NotFoundError
    | RuleBrokenError
    | VersionConflictError
    | ForbiddenError,
    strawberry.union(
        "EraseCustomerResult",
        description=(
            "EraseCustomerSuccess, or why nothing was written: InvalidInputError (a "
            "malformed id), NotFoundError (no such customer), RuleBrokenError "
            "(IDEMPOTENCY_KEY_REUSED), VersionConflictError (not at expectedVersion), or "
            "ForbiddenError (a customer naming someone else). Erasing an erased customer "
            "succeeds and writes nothing."
        ),
    ),
]


@returns_errors
async def erase_customer(
    info: strawberry.Info[Context, None],
    input: Annotated[
        EraseCustomerInput,
        strawberry.argument(description="The customer to erase."),
    ],
    idempotency_key: IdempotencyKey = None,
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
