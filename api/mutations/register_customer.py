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
from api.mutations._command import (
    IdempotencyKey,
    MutationSuccess,
    execute,
    returns_errors,
)
from api.types import Customer
from domain.commands import RegisterCustomer
from readmodel.projections import CustomersProjection


@strawberry.input(
    description=(
        "A new customer. Signed in as a customer, it registers you: your token's customer"
        " id becomes the new customer's."
    )
)
class RegisterCustomerInput:
    email: str = strawberry.field(
        description=(
            "Unique among customers, up to 254 characters, stored lower-cased. Taken: "
            "AlreadyExistsError EMAIL_TAKEN."
        )
    )
    name: str = strawberry.field(description="The customer's name: 1-200 characters, trimmed.")


@strawberry.type(description="registerCustomer applied (or replayed): the new customer.")
class RegisterCustomerSuccess(MutationSuccess):
    customer: Customer = strawberry.field(
        description="The new customer, field for field as a query with consistencyToken shows it."
    )


RegisterCustomerResult = Annotated[
    RegisterCustomerSuccess
    | InvalidInputError
    | AlreadyExistsError
    | RuleBrokenError
    | VersionConflictError
    | ForbiddenError,
    strawberry.union(
        "RegisterCustomerResult",
        description=(
            "RegisterCustomerSuccess, or why nothing was written: InvalidInputError "
            "(EMAIL_MALFORMED, a name empty or too long), AlreadyExistsError "
            "(EMAIL_TAKEN, or ALREADY_REGISTERED when your token registered already), "
            "RuleBrokenError (IDEMPOTENCY_KEY_REUSED), VersionConflictError when "
            "concurrent writers kept winning, or ForbiddenError."
        ),
    ),
]


@returns_errors
async def register_customer(
    info: strawberry.Info[Context, None],
    input: Annotated[
        RegisterCustomerInput,
        strawberry.argument(description="The customer to register."),
    ],
    idempotency_key: IdempotencyKey = None,
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
