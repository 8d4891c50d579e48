"""Typed mutation errors: each with a machine-readable code, the input field
it concerns and a message, one GraphQL type per kind of failure."""

from __future__ import annotations

import strawberry

from domain.errors import (
    AlreadyExists,
    ConcurrencyConflict,
    DomainError,
    Forbidden,
    InvalidInput,
    NotFound,
)

__all__ = [
    "AlreadyExistsError",
    "Error",
    "ForbiddenError",
    "InvalidInputError",
    "NotFoundError",
    "RuleBrokenError",
    "VersionConflictError",
    "to_error",
]


@strawberry.interface(description="Why a mutation did not apply. Nothing was written.")
class Error:
    code: str = strawberry.field(
        description="Stable, machine-readable, specific: e.g. SKU_TAKEN, QUANTITY_TOO_LARGE, "
        'DUPLICATE_SKU (every code: docs/graphql.md, "Error codes").'
    )
    field: str | None = strawberry.field(
        description="The input field at fault as you sent it, camelCase, list positions as "
        "dotted indexes from 0 (`orderId`, `lines.1.quantity`, `tags.2`, `idempotencyKey`); "
        "null when no input is at fault."
    )
    message: str = strawberry.field(
        description="What went wrong and what would be accepted, in English, for a person "
        "to read: match on `code`, not on this text."
    )


@strawberry.type(
    description="An input value is malformed or out of range (bad characters, too long, "
    "a number past its bound, a malformed id, sku, email or currency). Fix the value "
    "named by `field` and send again."
)
class InvalidInputError(Error):
    pass


@strawberry.type(
    description="The input names a well-formed id or sku of nothing (code NOT_FOUND). "
    "A customer asking about an id that is not theirs hears ForbiddenError instead."
)
class NotFoundError(Error):
    pass


@strawberry.type(
    description="A value that must be unique is taken: SKU_TAKEN, EMAIL_TAKEN, or "
    "ALREADY_REGISTERED when a customer's sign-in registers a second time."
)
class AlreadyExistsError(Error):
    pass


@strawberry.type(
    description="A business rule forbids this in the object's current state: e.g. "
    "INSUFFICIENT_STOCK, ILLEGAL_STATUS_TRANSITION, PRODUCT_DISCONTINUED, or "
    "IDEMPOTENCY_KEY_REUSED. The input is well formed; the state would have to change."
)
class RuleBrokenError(Error):
    pass


@strawberry.type(
    description="The caller may not do this (to this object): their role, or it is "
    "not theirs. A customer hears this, not NotFoundError, for an id that is not "
    "theirs, whether it exists or not."
)
class ForbiddenError(Error):
    pass


@strawberry.type(
    description="The object changed since the version you expected (code VERSION_CONFLICT): "
    "read it again, decide, and send the change with its new version. Also the answer, "
    "with `field` null, when you sent no expectedVersion and concurrent writers kept "
    "winning the retries."
)
class VersionConflictError(Error):
    expected_version: int = strawberry.field(
        description="The version the change expected: your expectedVersion, or the one "
        "the service read before it lost the race."
    )
    actual_version: int | None = strawberry.field(
        description="The object's version now; null when it is not known."
    )


def to_error(error: DomainError) -> Error:
    kind: type[Error]
    if isinstance(error, ConcurrencyConflict):
        return VersionConflictError(
            code=error.code,
            field=error.field,
            message=error.message,
            expected_version=error.expected,
            actual_version=error.actual,
        )
    if isinstance(error, InvalidInput):
        kind = InvalidInputError
    elif isinstance(error, NotFound):
        kind = NotFoundError
    elif isinstance(error, AlreadyExists):
        kind = AlreadyExistsError
    elif isinstance(error, Forbidden):
        kind = ForbiddenError
    else:
        kind = RuleBrokenError
    return kind(code=error.code, field=error.field, message=error.message)
