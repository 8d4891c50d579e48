"""Domain errors: each names the rule that was broken, the input field it
concerns (when one does) and a machine-readable code the API passes on."""

from __future__ import annotations

__all__ = [
    "AlreadyExists",
    "ConcurrencyConflict",
    "DomainError",
    "Forbidden",
    "InvalidInput",
    "NotFound",
    "RuleBroken",
]


class DomainError(Exception):
    """Base of every error the domain raises on purpose."""

    code = "DOMAIN_ERROR"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if code is not None:
            self.code = code


class InvalidInput(DomainError):
    """A value is malformed or out of range (a negative quantity, a bad email)."""

    code = "INVALID_INPUT"


class RuleBroken(DomainError):
    """A business rule forbids the command in the aggregate's current state."""

    code = "RULE_BROKEN"


class Forbidden(DomainError):
    """The caller may not do this to this aggregate (writemodel/access.py says who
    may): nothing was looked at beyond what the decision needed, nothing written."""

    code = "FORBIDDEN"


class NotFound(DomainError):
    """The command names an aggregate that does not exist."""

    code = "NOT_FOUND"


class AlreadyExists(DomainError):
    """A unique value (sku, email) is already taken."""

    code = "ALREADY_EXISTS"


class ConcurrencyConflict(DomainError):
    """The aggregate changed since the version the command expected."""

    code = "VERSION_CONFLICT"

    def __init__(
        self, aggregate: str, aggregate_id: str, expected: int, actual: int | None
    ) -> None:
        now = "has changed" if actual is None else f"is at version {actual}"
        super().__init__(
            f"{aggregate} {aggregate_id} {now}, not at the expected version {expected}",
            field="expectedVersion",
        )
        self.expected = expected
        self.actual = actual
