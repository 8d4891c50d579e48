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
    message: str


@strawberry.type(description="An input value is malformed or out of range.")
class InvalidInputError(Error):
    pass


@strawberry.type(description="The input names something that does not exist.")
class NotFoundError(Error):
    pass


@strawberry.type(description="A unique value (sku, email) is taken.")
class AlreadyExistsError(Error):
    pass


@strawberry.type(description="A business rule forbids this in the current state.")
class RuleBrokenError(Error):
    pass


@strawberry.type(
    description="The caller may not do this (to this object): their role, or it is "
    "not theirs. A customer hears this, not NotFoundError, for an id that is not "
    "theirs, whether it exists or not."
)
class ForbiddenError(Error):
    pass


@strawberry.type(description="The object changed since the version you expected.")
class VersionConflictError(Error):
    expected_version: int
    actual_version: int | None


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
