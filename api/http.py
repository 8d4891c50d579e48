"""GraphQL over HTTP and WebSocket: strawberry's ASGI view, strict about what it takes in.

Strawberry's view trusts the shape of what it is sent: a JSON body that is a
string, a non-UTF-8 body, JSON nested deeper than the decoder's recursion limit
or a subscription over POST ended in a 500. Here every request the service
cannot serve is refused before execution with a 4xx whose body has the shape of
a GraphQL response, `{"errors": [{"message": ..., "extensions": {"code": ...}}]}`
(the checks are in api/requests.py), and every WebSocket operation gets an
answer (api/websocket.py). The codes are listed in docs/graphql.md ("Bad
requests and transports").

The answer's media type and status follow the GraphQL-over-HTTP spec
(api/media.py). A subscription runs over HTTP too, as the multipart stream
Apollo Client reads (`Accept: multipart/mixed;subscriptionSpec=1.0`), with the
rules of a WebSocket subscription: the caller's token is checked once, and the
stream ends when it expires; the policy, the limits and the budget apply as to
any operation; no request deadline cuts it, as none cuts a WebSocket's.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from typing import Any, cast

import orjson
from cross_web import AsyncHTTPRequestAdapter, HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Message, Receive, Scope, Send
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData, GraphQLRequestProtocol
from strawberry.http.parse_content_type import parse_content_type
from strawberry.http.streaming import HTTPStreamTransport, SSETransport
from strawberry.subscriptions import (
    GRAPHQL_SSE_PROTOCOL,
    GRAPHQL_TRANSPORT_WS_PROTOCOL,
    GRAPHQL_WS_PROTOCOL,
    MULTIPART_SUBSCRIPTION_PROTOCOL,
)
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType

from api.auth import InvalidToken, KeysUnavailable, TokenVerifier, bearer_token, connection_token
from api.context import Context
from api.extensions import with_error_codes
from api.identity import ANONYMOUS, Identity
from api.media import (
    GRAPHQL_RESPONSE_JSON,
    JSON,
    accepts_multipart_subscription,
    request_error_status,
    response_media_type,
)
from api.multipart import OPENING, MultipartSubscription, until_expired
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


def _refusal_response(error: HTTPException, media_type: str = JSON) -> Response:
    if not isinstance(error, RequestRefused):
        error = RequestRefused(
            error.status_code, _CODE_BY_STATUS.get(error.status_code, "BAD_REQUEST"), error.reason
        )
    if error.status_code == 405:
        error.headers.setdefault("Allow", "GET, POST")
    return JSONResponse(
        {"errors": [error.formatted]},
        status_code=error.status_code,
        headers=error.headers,
        media_type=media_type,
    )


def _subscription_needs_a_stream() -> RequestRefused:
    return RequestRefused(
        400,
        "SUBSCRIPTION_NEEDS_WEBSOCKET",
        "Subscriptions run over a WebSocket at /graphql (graphql-transport-ws or graphql-ws), "
        "or over HTTP as a multipart stream: send `Accept: multipart/mixed;subscriptionSpec=1.0`",
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


def dumps(data: object) -> bytes:
    """An answer's JSON: orjson, several times faster than json.dumps on a large
    page (docs/performance.md, "Large pages"), and the same JSON. What orjson
    refuses (an integer beyond 64 bits, a key that is not a string) json.dumps
    writes as before."""
    try:
        return orjson.dumps(data)
    except TypeError:  # orjson.JSONEncodeError is one
        return json.dumps(data, separators=(",", ":")).encode()


class GraphQLView(GraphQL[Context, None]):
    """Strawberry's ASGI view with the refusals above; subclasses add the context."""

    graphql_transport_ws_handler_class = TransportWSHandler
    graphql_ws_handler_class = LegacyWSHandler
    stream_transport_classes_by_protocol: Mapping[str, type[HTTPStreamTransport]] = {
        MULTIPART_SUBSCRIPTION_PROTOCOL: MultipartSubscription,
        GRAPHQL_SSE_PROTOCOL: SSETransport,  # not offered (not in the protocols)
    }

    def __init__(
        self,
        *,
        max_body_bytes: int,
        verifier: TokenVerifier | None = None,
        persisted: PersistedDocuments | None = None,
        **kwargs: Any,
    ) -> None:
        # Both WebSocket protocols, and subscriptions over HTTP as Apollo's multipart.
        kwargs.setdefault(
            "subscription_protocols",
            (GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL, MULTIPART_SUBSCRIPTION_PROTOCOL),
        )
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
        headers = Request(scope).headers
        try:
            declared = headers.get("content-length", "0")
            if declared.isdigit() and int(declared) > self.max_body_bytes:
                raise _BodyTooLarge(self.max_body_bytes)
            response = await self.run(Request(scope, _limited(receive, self.max_body_bytes)))
        except HTTPException as error:  # strawberry's plain-text refusals included
            response = _refusal_response(error, response_media_type(headers.get("accept")))
        await response(scope, receive, send)

    def should_render_graphql_ide(self, request: Any) -> bool:
        # A persisted query over GET sends its hash or id and no `query`: not a visit.
        params = request.query_params
        persisted = "extensions" in params or "documentId" in params
        return not persisted and super().should_render_graphql_ide(request)

    async def get_sub_response(self, request: Request | Any) -> Response:
        response = await super().get_sub_response(request)
        # The answer's media type, chosen once from `Accept` (create_response uses it).
        response.media_type = response_media_type(request.headers.get("accept"))
        return response

    async def create_streaming_response(
        self,
        request: Any,
        stream: Callable[[], AsyncIterator[str]],
        sub_response: Response,
        headers: Mapping[str, str],
    ) -> Response:
        async def framed() -> AsyncIterator[str]:
            yield OPENING
            async for chunk in stream():
                yield chunk

        return await super().create_streaming_response(request, framed, sub_response, headers)

    async def process_result(self, request: Any, result: ExecutionResult) -> GraphQLHTTPResponse:
        # A streamed subscription's results do not pass the schema's `execute`,
        # which gives every error its code: they get theirs here.
        with_error_codes(result.errors)
        return await super().process_result(request, result)

    def create_response(
        self,
        response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse],
        sub_response: Response,
    ) -> Response:
        """Strawberry's, with the media type chosen from `Accept`. A request error
        (nothing ran) has no `data` entry, as the GraphQL spec says ("if an error
        was raised before execution begins, the data entry should not be
        present"); under application/graphql-response+json it also gets its 4xx
        (or 500), while application/json keeps 200, as the GraphQL-over-HTTP spec
        asks of that media type."""
        media_type = sub_response.media_type or JSON
        status = sub_response.status_code or 200
        headers = sub_response.headers
        if isinstance(response_data, dict):
            refused = request_error_status(response_data)
            if refused is not None:
                response_data = cast(
                    GraphQLHTTPResponse, {k: v for k, v in response_data.items() if k != "data"}
                )
                if media_type == GRAPHQL_RESPONSE_JSON:
                    # Set already when the budget refused (429 with Retry-After).
                    status = sub_response.status_code or refused
                    if status == 401:
                        headers.setdefault("WWW-Authenticate", "Bearer")
        response = Response(dumps(response_data), status_code=status, media_type=media_type)
        response.headers.raw.extend(headers.raw)
        if sub_response.background:
            response.background = sub_response.background
        return response

    def encode_json(self, data: object) -> str:
        # Text: a WebSocket message must go as a text frame (bytes would be sent
        # as binary), and the multipart stream writes strings.
        return dumps(data).decode()

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
            if content_type != JSON:
                raise RequestRefused(
                    415, "UNSUPPORTED_MEDIA_TYPE", "Send the request as application/json"
                )
            data = self.parse_json(await request.get_body())
        data = self.persisted.expand(data)  # a persisted query's hash or id: its document
        query, variables, operation_name, extensions = request_fields(data)
        # A multipart stream is what the client takes, should the operation be a
        # subscription (execute_operation decides); anything else answers JSON.
        protocol: GraphQLRequestProtocol = (
            "multipart-subscription"
            if accepts_multipart_subscription(request.headers.get("accept"))
            else "http"
        )
        return GraphQLRequestData(
            query=query,
            variables=variables,
            operation_name=operation_name,
            extensions=extensions,
            protocol=protocol,
        )

    async def execute_operation(
        self,
        request: Any,
        request_adapter: AsyncHTTPRequestAdapter,
        request_data: GraphQLRequestData | list[GraphQLRequestData],
        context: Context,
        root_value: None,
        sub_response: Any,
    ) -> Any:
        assert isinstance(request_data, GraphQLRequestData)  # parse_http_body makes no batch
        assert request_data.query is not None  # request_fields saw to it
        self.persisted.admit(request_data.query, context.identity)  # trusted documents
        operation = select_operation(request_data.query, request_data.operation_name)
        if operation is OperationType.SUBSCRIPTION:
            # Strawberry ran one like a query and failed inside the resolver.
            if request_data.protocol != MULTIPART_SUBSCRIPTION_PROTOCOL:
                raise _subscription_needs_a_stream()
            return await self._subscribe(request_data, context)
        if operation is OperationType.MUTATION and request_adapter.method == "GET":
            raise RequestRefused(
                405, "METHOD_NOT_ALLOWED", "Mutations need POST", headers={"Allow": "POST"}
            )
        result = await self.execute_single(
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

    async def _subscribe(
        self, request_data: GraphQLRequestData, context: Context
    ) -> AsyncGenerator[ExecutionResult, None]:
        """The subscription's results, streamed by strawberry's multipart transport
        (heartbeats every 5 s). Through the schema's `stream`, as a WebSocket's
        subscriptions go: the limits, the policy and the budget apply, and no deadline."""
        results = await self.schema.stream(
            request_data.query,
            variable_values=request_data.variables,
            context_value=context,
            operation_name=request_data.operation_name,
            operation_extensions=request_data.extensions,
            allowed_operation_types=(OperationType.SUBSCRIPTION,),
        )
        return until_expired(
            cast(AsyncGenerator[ExecutionResult, None], results), context.identity.expires_at
        )
