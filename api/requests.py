"""What a GraphQL request must be before it runs: the checks both transports share.

Strawberry trusts the shape of what it is sent; these functions do not. Each
refusal is a `RequestRefused` with an HTTP status, a stable code and a message
(docs/graphql.md, "Bad requests and transports").
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any

from cross_web import HTTPException
from graphql import GraphQLError, OperationDefinitionNode, parse
from strawberry.types.graphql import OperationType

__all__ = [
    "MAX_JSON_DEPTH",
    "RequestRefused",
    "UnreadableJson",
    "load_json",
    "request_fields",
    "select_operation",
]

# Containers (objects, arrays) a request may nest, the request object itself
# included. Real inputs nest under ten; deeper JSON only costs recursion.
MAX_JSON_DEPTH = 64
# The view reads which operation a document runs before the schema executes it.
# Past this many tokens it leaves the document to the schema, whose own token
# limit (lower) refuses it: this bound only caps what the look costs.
_INSPECT_MAX_TOKENS = 10_000
# Documents longer than this are inspected every time rather than cached, so the
# cache cannot hold more than 1024 x 20 KB.
_CACHE_MAX_CHARS = 20_000


class RequestRefused(HTTPException):
    """A request refused before execution: an HTTP status, a stable code and a message."""

    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(status, message)
        self.code = code
        self.headers = dict(headers or {})

    @property
    def formatted(self) -> dict[str, Any]:
        return {"message": self.reason, "extensions": {"code": self.code}}


# --- JSON ---


class UnreadableJson(json.JSONDecodeError):
    """Not JSON this service reads. A JSONDecodeError, so strawberry's WebSocket
    handlers treat it as the non-JSON message it is."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "", 0)
        self.msg = message  # without JSONDecodeError's ": line 1 column 1 (char 0)"


def _refuse_constant(name: str) -> object:
    raise UnreadableJson(f"{name} is not JSON")


def load_json(data: str | bytes, max_depth: int = MAX_JSON_DEPTH) -> object:
    """Decode strict UTF-8 JSON nested at most `max_depth` containers deep.

    Raises UnreadableJson, saying why, for anything else: bytes that are not
    UTF-8, malformed JSON, NaN or Infinity, an integer too long for Python to
    read, or nesting past the bound (the C decoder's own recursion limit turns
    into this error too, so no depth reaches the rest of the program)."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise UnreadableJson(f"The body is not UTF-8 (byte {error.start})") from None
    try:
        value = json.loads(data, parse_constant=_refuse_constant)
    except UnreadableJson:
        raise
    except json.JSONDecodeError as error:
        raise UnreadableJson(f"The body is not valid JSON: {error.msg} at {error.pos}") from None
    except RecursionError:
        raise UnreadableJson(f"The JSON is nested deeper than {max_depth} levels") from None
    except ValueError:  # an integer past sys.get_int_max_str_digits()
        raise UnreadableJson("The JSON has a number with too many digits") from None
    if _deeper_than(value, max_depth):
        raise UnreadableJson(f"The JSON is nested deeper than {max_depth} levels")
    return value


def _deeper_than(value: object, limit: int) -> bool:
    """Whether `value` nests containers more than `limit` deep; iterative, linear."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children: Any
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


# --- the request's fields and its operation ---


def request_fields(data: object) -> tuple[str, dict[str, Any] | None, str | None, Any]:
    """query, variables, operationName and extensions of one GraphQL request, each of
    the type the GraphQL-over-HTTP spec gives it; RequestRefused otherwise."""
    if not isinstance(data, dict):
        raise RequestRefused(
            400, "BAD_REQUEST", "The request must be a JSON object with a `query` string"
        )
    query = data.get("query")
    if not isinstance(query, str) or not query.strip():
        raise RequestRefused(400, "BAD_REQUEST", "`query` must be a non-empty string")
    variables = data.get("variables")
    if not isinstance(variables, dict | None):
        raise RequestRefused(400, "BAD_REQUEST", "`variables` must be an object or null")
    operation_name = data.get("operationName")
    if not isinstance(operation_name, str | None):
        raise RequestRefused(400, "BAD_REQUEST", "`operationName` must be a string or null")
    extensions = data.get("extensions")
    if not isinstance(extensions, dict | None):
        raise RequestRefused(400, "BAD_REQUEST", "`extensions` must be an object or null")
    # Some clients send "" for "no name"; it names no operation, so it means none.
    return query, variables, operation_name or None, extensions


@functools.lru_cache(maxsize=1024)
def _operations_cached(query: str) -> tuple[tuple[str | None, OperationType], ...] | GraphQLError:
    return _operations(query)


def _operations(query: str) -> tuple[tuple[str | None, OperationType], ...] | GraphQLError:
    try:
        document = parse(query, no_location=True, max_tokens=_INSPECT_MAX_TOKENS)
    except GraphQLError as error:
        return error
    except RecursionError:
        raise RequestRefused(
            400, "BAD_REQUEST", "The document is nested too deeply to be read"
        ) from None
    return tuple(
        (d.name.value if d.name else None, OperationType(d.operation.value))
        for d in document.definitions
        if isinstance(d, OperationDefinitionNode)
    )


def select_operation(query: str, operation_name: str | None) -> OperationType | GraphQLError:
    """The type of the operation a request runs, as the GraphQL spec selects it.

    A document that does not parse comes back as its syntax error (the schema reports
    it as usual). Raises RequestRefused when the spec says the request is an error:
    several operations and no `operationName` (OPERATION_NAME_REQUIRED), or a name
    no operation has (OPERATION_NOT_FOUND). Strawberry would run the first operation.
    """
    operations = _operations_cached(query) if len(query) <= _CACHE_MAX_CHARS else _operations(query)
    if isinstance(operations, GraphQLError):
        return operations
    if operation_name is None:
        if len(operations) > 1:
            raise RequestRefused(
                400,
                "OPERATION_NAME_REQUIRED",
                "The document has several operations: say which in `operationName`",
            )
        if not operations:
            raise RequestRefused(400, "BAD_REQUEST", "The document has no operation")
        return operations[0][1]
    for name, kind in operations:
        if name == operation_name:
            return kind
    raise RequestRefused(
        400, "OPERATION_NOT_FOUND", f"The document has no operation named {operation_name!r}"
    )
