"""GraphQL over HTTP and WebSocket: strawberry's ASGI view, strict about what it takes in.

Strawberry's view trusts the shape of what it is sent: a JSON body that is a
string, a non-UTF-8 body, JSON nested deeper than the decoder's recursion limit
or a subscription over POST ended in a 500. Here every request the service
cannot serve is refused before execution with a 4xx whose body has the shape of
a GraphQL response, `{"errors": [{"message": ..., "extensions": {"code": ...}}]}`,
and every WebSocket operation gets an answer (`error`, or `next`/`data` then
`complete`). The codes are listed in docs/graphql.md ("Bad requests and transports").

The overrides are small and each says why; the parsing itself is strawberry's.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
from collections.abc import Mapping
from typing import Any

from cross_web import AsyncHTTPRequestAdapter, HTTPException
from graphql import GraphQLError, OperationDefinitionNode, parse
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Message, Receive, Scope, Send
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLRequestData
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.http.parse_content_type import parse_content_type
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType

from api.context import Context

__all__ = [
    "MAX_JSON_DEPTH",
    "GraphQLView",
    "RequestRefused",
    "load_json",
    "select_operation",
]

log = logging.getLogger(__name__)

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

# The code a refusal from strawberry itself (a cross_web HTTPException) gets, by status.
_CODE_BY_STATUS = {
    400: "BAD_REQUEST",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "REQUEST_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
}


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


def _refusal_response(error: HTTPException) -> Response:
    if not isinstance(error, RequestRefused):
        error = RequestRefused(
            error.status_code, _CODE_BY_STATUS.get(error.status_code, "BAD_REQUEST"), error.reason
        )
    if error.status_code == 405:
        error.headers.setdefault("Allow", "GET, POST")
    return JSONResponse(
        {"errors": [error.formatted]}, status_code=error.status_code, headers=error.headers
    )


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


# --- WebSocket protocols ---


def _well_formed(message: object) -> bool:
    """The envelope both protocols share: an object with a string `type`, and a string
    `id` where one is given (strawberry indexes dicts by it)."""
    return (
        isinstance(message, dict)
        and isinstance(message.get("type"), str)
        and isinstance(message.get("id", ""), str)
    )


def _coded(error: dict[str, Any]) -> dict[str, Any]:
    """A formatted error sent in an `error` message, with a code if it has none: such
    errors come before execution (the schema's validation, strawberry's own limit),
    and do not pass through the schema's `execute`, which gives HTTP errors theirs."""
    extensions = error.get("extensions") or {}
    if "code" not in extensions:
        limit = error.get("message") == "Subscription limit reached"
        code = "TOO_MANY_OPERATIONS" if limit else "GRAPHQL_VALIDATION_FAILED"
        error = {**error, "extensions": {**extensions, "code": code}}
    return error


def _refusal(payload: object) -> dict[str, Any] | None:
    """Why an operation sent over a WebSocket is refused before it starts, as a formatted
    error; None when the schema may run it. A syntax error is answered here: strawberry's
    parser cache raises it outside the stream, and the operation just completed."""
    try:
        query, _, operation_name, _ = request_fields(payload)
        operation = select_operation(query, operation_name)
    except RequestRefused as refused:
        return refused.formatted
    if isinstance(operation, GraphQLError):
        return {**operation.formatted, "extensions": {"code": "GRAPHQL_PARSE_FAILED"}}
    return None


class TransportWSHandler(BaseGraphQLTransportWSHandler[Context, None]):
    """graphql-transport-ws: a malformed message closes with 4400 as the protocol says
    (strawberry raised on some); an operation refused before it starts, a syntax error
    included, gets an `error` message, never a bare `complete`."""

    async def handle_message(self, message: Any) -> None:
        if not _well_formed(message) or (
            message["type"] == "subscribe" and not isinstance(message.get("payload"), dict)
        ):
            await self.handle_invalid_message("Invalid message")
            return
        await super().handle_message(message)

    async def handle_subscribe(self, message: Any) -> None:
        if self.connection_acknowledged and message["id"] not in self.operations:
            refusal = _refusal(message["payload"])
            if refusal is not None:
                await self.send_message(
                    {"id": message["id"], "type": "error", "payload": [refusal]}
                )
                return
        await super().handle_subscribe(message)

    async def send_message(self, message: Any) -> None:
        if message.get("type") == "error":
            message = {**message, "payload": [_coded(e) for e in message["payload"]]}
        await super().send_message(message)


class LegacyWSHandler(BaseGraphQLWSHandler[Context, None]):
    """graphql-ws (subscriptions-transport-ws): queries and mutations are executed once
    (strawberry only subscribed, and failed on them), and every `start` gets an answer:
    an `error` for a malformed or refused operation or a syntax error, where strawberry
    sent nothing."""

    async def handle_message(self, message: Any) -> None:
        if _well_formed(message):  # the legacy protocol has no answer to a malformed message
            await super().handle_message(message)

    async def handle_start(self, message: Any) -> None:
        if "id" not in message:
            return  # nothing to answer to
        if self.connection_acknowledged:
            refusal = _refusal(message.get("payload"))
            if refusal is not None:
                await self.send_message({"type": "error", "id": message["id"], "payload": refusal})
                return
        await super().handle_start(message)

    async def handle_async_results(
        self,
        operation_id: str,
        query: str,
        operation_name: str | None,
        variables: dict[str, object] | None,
    ) -> None:
        if select_operation(query, operation_name) is OperationType.SUBSCRIPTION:
            await super().handle_async_results(operation_id, query, operation_name, variables)
            return
        try:
            result = await self.schema.execute(
                query,
                variable_values=variables,
                context_value=self.context,
                root_value=self.root_value,
                operation_name=operation_name,
            )
            await self.send_data_message(result, operation_id)
        finally:
            # Cancelled by a `stop` or the end of the connection, or done: either way
            # the client hears `complete`, as it does for a subscription.
            self.tasks.pop(operation_id, None)
            with contextlib.suppress(WebSocketDisconnected):
                await self.send_message({"type": "complete", "id": operation_id})

    async def send_message(self, message: Any) -> None:
        if message.get("type") == "error" and isinstance(message.get("payload"), dict):
            message = {**message, "payload": _coded(message["payload"])}
        await super().send_message(message)


# --- the view ---


class _BodyTooLarge(RequestRefused):
    def __init__(self, limit: int) -> None:
        super().__init__(413, "REQUEST_TOO_LARGE", f"The request body is over {limit} bytes")


def _limited(receive: Receive, limit: int) -> Receive:
    """`receive`, refusing once the body passes `limit` bytes (a chunked body says
    no length up front)."""
    seen = 0

    async def limited() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _BodyTooLarge(limit)
        return message

    return limited


class GraphQLView(GraphQL[Context, None]):
    """Strawberry's ASGI view with the refusals above; subclasses add the context."""

    graphql_transport_ws_handler_class = TransportWSHandler
    graphql_ws_handler_class = LegacyWSHandler

    def __init__(self, *, max_body_bytes: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        try:
            declared = Request(scope).headers.get("content-length", "0")
            if declared.isdigit() and int(declared) > self.max_body_bytes:
                raise _BodyTooLarge(self.max_body_bytes)
            response = await self.run(Request(scope, _limited(receive, self.max_body_bytes)))
        except HTTPException as error:  # strawberry's plain-text refusals included
            response = _refusal_response(error)
        await response(scope, receive, send)

    def decode_json(self, data: str | bytes) -> object:
        return load_json(data)  # also decodes every WebSocket message

    def parse_json(self, data: str | bytes) -> Any:
        try:
            return load_json(data)
        except UnreadableJson as error:
            raise RequestRefused(400, "BAD_REQUEST", error.msg) from None

    async def parse_http_body(self, request: AsyncHTTPRequestAdapter) -> GraphQLRequestData:
        # Replaces strawberry's: its body could be any JSON value (a string raised
        # AttributeError), and batches and uploads are off here anyway.
        if request.method == "GET":
            data: object = self.parse_query_params(request.query_params)
        else:
            content_type, _ = parse_content_type(request.content_type or "")
            if content_type != "application/json":
                raise RequestRefused(
                    415, "UNSUPPORTED_MEDIA_TYPE", "Send the request as application/json"
                )
            data = self.parse_json(await request.get_body())
        query, variables, operation_name, extensions = request_fields(data)
        return GraphQLRequestData(
            query=query,
            variables=variables,
            operation_name=operation_name,
            extensions=extensions,
            protocol="http",
        )

    async def execute_single(
        self,
        request: Any,
        request_adapter: AsyncHTTPRequestAdapter,
        sub_response: Any,
        context: Context,
        root_value: None,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult:
        assert request_data.query is not None  # request_fields saw to it
        operation = select_operation(request_data.query, request_data.operation_name)
        if operation is OperationType.SUBSCRIPTION:
            # Strawberry ran it like a query and failed inside the resolver.
            raise RequestRefused(
                400,
                "SUBSCRIPTION_NEEDS_WEBSOCKET",
                "Subscriptions run over a WebSocket at /graphql "
                "(graphql-transport-ws or graphql-ws), not over HTTP",
            )
        if operation is OperationType.MUTATION and request_adapter.method == "GET":
            raise RequestRefused(
                405, "METHOD_NOT_ALLOWED", "Mutations need POST", headers={"Allow": "POST"}
            )
        return await super().execute_single(
            request=request,
            request_adapter=request_adapter,
            sub_response=sub_response,
            context=context,
            root_value=root_value,
            request_data=request_data,
        )
