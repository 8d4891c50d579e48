"""registerCustomer: a new customer, by a unique email."""

from __future__ import annotations

from typing import Annotated

import strawberry

from api.context import Context
from api.errors import (
    AlreadyExistsError,
    Error,
    ForbiddenError,
    InvalidInputError,
    RuleBrokenError,
    VersionConflictError,
)
from api.mutations._command import execute
from api.types import Customer
from domain.commands import RegisterCustomer
from readmodel.projections import CustomersProjection


@strawberry.input
class RegisterCustomerInput:
    email: str = strawberry.field(description="Unique; stored lower-cased.")
    name: str


@strawberry.type
class RegisterCustomerSuccess:
    customer: Customer
    consistency_token: str = strawberry.field(
        description="Pass to a query's consistencyToken to read this write."
    )
    replayed: bool = strawberry.field(
        description="True when an idempotency key answered with the first result."
    )


RegisterCustomerResult = Annotated[
    RegisterCustomerSuccess
    | InvalidInputError
    | AlreadyExistsError
    | RuleBrokenError
    | VersionConflictError
    | ForbiddenError,
    strawberry.union("RegisterCustomerResult"),
]


async def register_customer(
    info: strawberry.Info[Context, None],
    input: RegisterCustomerInput,
    idempotency_key: str | None = None,
) -> RegisterCustomerResult:
    outcome = await execute(
        info,
        RegisterCustomer(
            email=input.email,
            name=input.name,
        ),
        idempotency_key,
        CustomersProjection(),
    )
    if isinstance(outcome, Error):
        return outcome  # type: ignore[return-value]
    return RegisterCustomerSuccess(
        customer=Customer.from_document(outcome.document),
        consistency_token=outcome.consistency_token,
        replayed=outcome.replayed,
    )
