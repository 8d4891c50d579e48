"""GraphQL over HTTP and WebSocket: strawberry's ASGI view, strict about what it takes in.

Strawberry's view trusts the shape of what it is sent: a JSON body that is a
string, a non-UTF-8 body, JSON nested deeper than the decoder's recursion limit
or a subscription over POST ended in a 500. Here every request the service
cannot serve is refused before execution with a 4xx whose body has the shape of
a GraphQL response, `{"errors": [{"message": ..., "extensions": {"code": ...}}]}`
(the checks are in api/requests.py), and every WebSocket operation gets an
answer (api/websocket.py). The codes are listed in docs/graphql.md ("Bad
requests and transports").
"""

from __future__ import annotations

from typing import Any

from cross_web import AsyncHTTPRequestAdapter, HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Message, Receive, Scope, Send
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLRequestData
from strawberry.http.parse_content_type import parse_content_type
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType

from api.auth import InvalidToken, KeysUnavailable, TokenVerifier, bearer_token, connection_token
from api.context import Context
from api.identity import ANONYMOUS, Identity
from api.persisted import PersistedDocuments
from api.requests import (
    RequestRefused,
    UnreadableJson,
    load_json,
    request_fields,
    select_operation,
)
from api.websocket import LegacyWSHandler, TransportWSHandler

__all__ = ["GraphQLView", "unauthenticated"]

# The code a refusal from strawberry itself (a cross_web HTTPException) gets, by status.
_CODE_BY_STATUS = {
    400: "BAD_REQUEST",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "REQUEST_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
}


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


def unauthenticated(error: InvalidToken) -> RequestRefused:
    """401 for a token that cannot be trusted: never anonymous, and only a short reason
    (RFC 6750's `invalid_token`, which tells clients to get a new one)."""
    quoted = error.reason.replace('"', "'")
    return RequestRefused(
        401,
        "UNAUTHENTICATED",
        f"The bearer token is not valid: {error.reason}",
        headers={"WWW-Authenticate": f'Bearer error="invalid_token", error_description="{quoted}"'},
    )


def _keys_unavailable() -> RequestRefused:
    return RequestRefused(
        503,
        "AUTH_UNAVAILABLE",
        "The token issuer's keys cannot be fetched; try again shortly",
        headers={"Retry-After": "5"},
    )


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

    def __init__(
        self,
        *,
        max_body_bytes: int,
        verifier: TokenVerifier | None = None,
        persisted: PersistedDocuments | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.max_body_bytes = max_body_bytes
        # None: no tokens are taken, every caller is anonymous (a view without accounts).
        self.verifier = verifier
        # Persisted queries and trusted documents (api/persisted.py); APQ with defaults.
        self.persisted = persisted or PersistedDocuments.default()

    async def request_identity(self, authorization: str | None) -> Identity:
        """Who an HTTP request's `Authorization` header names: ANONYMOUS without one;
        a bad token is refused with 401, never taken as anonymous."""
        try:
            token = bearer_token(authorization)
            return await self._identity(token)
        except InvalidToken as error:
            raise unauthenticated(error) from None
        except KeysUnavailable:
            raise _keys_unavailable() from None

    async def connection_identity(self, payload: object, handshake: str | None) -> Identity:
        """Who a WebSocket's `connection_init` payload (or, without a token there, its
        handshake's `Authorization` header) names; InvalidToken or KeysUnavailable."""
        return await self._identity(connection_token(payload, handshake))

    async def _identity(self, token: str | None) -> Identity:
        if token is None:
            return ANONYMOUS
        if self.verifier is None:
            raise InvalidToken("this service takes no tokens")
        return await self.verifier.identity(token)

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

    def should_render_graphql_ide(self, request: Any) -> bool:
        # A persisted query over GET sends its hash or id and no `query`: not a visit.
        params = request.query_params
        persisted = "extensions" in params or "documentId" in params
        return not persisted and super().should_render_graphql_ide(request)

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
        data = self.persisted.expand(data)  # a persisted query's hash or id: its document
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
        self.persisted.admit(request_data.query, context.identity)  # trusted documents
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
        result = await super().execute_single(
            request=request,
            request_adapter=request_adapter,
            sub_response=sub_response,
            context=context,
            root_value=root_value,
            request_data=request_data,
        )
        cache = self.persisted.cache_control(
            request_adapter.method, request_data.extensions, context.identity, result
        )
        if cache:
            sub_response.headers.update(cache)
        return result
