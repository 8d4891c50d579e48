"""registerCustomer: a new customer, by a unique email."""

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
from api.types import Customer
from domain.commands import RegisterCustomer
from readmodel.projections import CustomersProjection


@strawberry.input
class RegisterCustomerInput:
    email: str = strawberry.field(description="Unique; stored lower-cased.")
    name: str


@strawberry.type
class RegisterCustomerSuccess(MutationSuccess):
    customer: Customer


RegisterCustomerResult = Annotated[
    RegisterCustomerSuccess
    | InvalidInputError
    | AlreadyExistsError
    | RuleBrokenError
    | VersionConflictError
    | ForbiddenError,
    strawberry.union("RegisterCustomerResult"),
]


@returns_errors
async def register_customer(
    info: strawberry.Info[Context, None],
    input: RegisterCustomerInput,
    idempotency_key: str | None = None,
) -> RegisterCustomerResult:
    answer = await execute(
        info,
        RegisterCustomer(
            email=input.email,
            name=input.name,
        ),
        idempotency_key,
        CustomersProjection(),
    )
    return answer.success(RegisterCustomerSuccess, customer=Customer.from_document(answer.document))
