"""Schema extensions: stable error codes, masked internals, and the
read-your-writes report and the operation's cost in the response's `extensions`."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from graphql import GraphQLError
from strawberry.extensions import MaskErrors, SchemaExtension
from strawberry.types.graphql import OperationType

from api.limits import measure_operation
from writemodel.unit_of_work import WriteDatabaseUnavailable

__all__ = ["ConsistencyReport", "CostReport", "MaskInternalErrors", "UserError", "with_error_codes"]

log = logging.getLogger("api.errors")


class UserError(GraphQLError):
    """A request the client can fix (a bad argument); shown as it is, never masked."""

    def __init__(self, message: str, *, code: str = "BAD_USER_INPUT", argument: str | None = None):
        extensions: dict[str, Any] = {"code": code}
        if argument:
            extensions["argument"] = argument
        super().__init__(message, extensions=extensions)


# Faults with a documented code (docs/graphql.md, "When the write database fails"):
# not internal errors, but their own words replace the driver's.
_FAULTS: dict[type[Exception], tuple[str, str]] = {
    WriteDatabaseUnavailable: (
        "WRITE_DATABASE_UNAVAILABLE",
        "the write database could not be reached; try again",
    ),
}


def _fault(error: GraphQLError) -> tuple[str, str] | None:
    for kind, answer in _FAULTS.items():
        if isinstance(error.original_error, kind):
            return answer
    return None


def _is_internal(error: GraphQLError) -> bool:
    original = error.original_error
    return original is not None and not isinstance(original, GraphQLError) and not _fault(error)


class MaskInternalErrors(MaskErrors):
    """Internal errors are logged with their traceback and, when masking is on,
    reach the client as a bare message with code INTERNAL_SERVER_ERROR."""

    def __init__(self, mask: bool) -> None:
        super().__init__(should_mask_error=lambda error: mask and _is_internal(error))

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        masked = super().anonymise_error(error)
        masked.extensions = {"code": "INTERNAL_SERVER_ERROR"}
        return masked

    def _process_errors(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        for error in errors:
            if _is_internal(error):
                log.error("internal error at %s", error.path, exc_info=error.original_error)
        return super()._process_errors(errors)


def with_error_codes(errors: list[GraphQLError] | None) -> None:
    """Give every error a stable `extensions.code`.

    Applied to the finished result rather than in an extension hook: an error
    raised while parsing (a syntax error, the token limit) leaves the
    operation hooks early, and must still get its code."""
    for error in errors or ():
        extensions = dict(error.extensions or {})
        if "code" in extensions:
            continue
        original = error.original_error
        if isinstance(original, GraphQLError) and original.extensions:
            extensions.update(original.extensions)
        if fault := _fault(error):
            extensions["code"], error.message = fault
            log.warning("%s at %s: %s", fault[0], error.path, original)
        if "code" not in extensions:
            if _is_internal(error):
                extensions["code"] = "INTERNAL_SERVER_ERROR"
            elif error.message.startswith("Syntax Error: Document contains more than"):
                extensions["code"] = "TOO_MANY_TOKENS"  # graphql-core's max_tokens
            elif error.message.startswith("Syntax Error"):
                extensions["code"] = "GRAPHQL_PARSE_FAILED"
            else:
                extensions["code"] = "GRAPHQL_VALIDATION_FAILED"
        error.extensions = extensions


class ConsistencyReport(SchemaExtension):
    """Says in `extensions.consistency` when a read answered before its token, and
    which documents its token produced that the read model set aside (quarantined)."""

    def on_operation(self) -> Iterator[None]:
        yield

    def get_results(self) -> dict[str, Any]:
        context = self.execution_context.context
        stale = getattr(context, "stale", None)
        quarantined = getattr(context, "quarantined", None)
        report: dict[str, Any] = {}
        if stale:
            report.update(stale=True, reads=stale)
        if quarantined:
            report["quarantined"] = quarantined
        return {"consistency": report} if report else {}


class CostReport(SchemaExtension):
    """Puts the cost api/limits.py computed for the operation that runs in
    `extensions.cost` (and so on the execution context, where the query budget,
    api/budget.py, adds what is left of the client's budget). Measured documents
    are remembered, so this costs a lookup."""

    def __init__(self, max_cost: int) -> None:
        self.max_cost = max_cost

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        if document is not None and context.operation_type is not OperationType.SUBSCRIPTION:
            measures = measure_operation(context.schema._schema, document, context.operation_name)
            if measures is not None:
                # Merged: the query budget (api/budget.py) adds its state beside.
                context.extensions_results.setdefault("cost", {}).update(
                    requested=measures.cost, limit=self.max_cost
                )
        yield
