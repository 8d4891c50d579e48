"""The two WebSocket protocols, made to answer every operation.

Strawberry's handlers raised on some malformed messages, completed a
subscription with a syntax error in silence (graphql-transport-ws) or never
answered it (graphql-ws), and failed on queries and mutations over the legacy
protocol. These subclasses check each operation as HTTP does (api/requests.py)
and answer with the protocol's `error` message when it cannot run.
"""

from __future__ import annotations

import contextlib
from typing import Any

from graphql import GraphQLError
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.types.graphql import OperationType

from api.context import Context
from api.requests import RequestRefused, request_fields, select_operation

__all__ = ["LegacyWSHandler", "TransportWSHandler"]


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
