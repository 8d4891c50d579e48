"""The two WebSocket protocols, made to answer every operation.

Strawberry's handlers raised on some malformed messages, completed a
subscription with a syntax error in silence (graphql-transport-ws) or never
answered it (graphql-ws), and failed on queries and mutations over the legacy
protocol. These subclasses check each operation as HTTP does (api/requests.py)
and answer with the protocol's `error` message when it cannot run.

Who is calling is settled once per socket, at `connection_init` (its payload's
token, see api/auth/bearer.py): every operation on the socket runs as that
identity. A bad token closes the socket with 4403 (graphql-transport-ws) or
answers `connection_error` and closes with 4403 (graphql-ws); a socket whose
token expires is closed with 4403 at its `exp`, and the client reconnects with a
fresh token and `after` (docs/security.md).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, cast

from graphql import GraphQLError
from starlette.websockets import WebSocketDisconnect
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
    _OperationStreamClosed,
)
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.types.execution import PreExecutionError
from strawberry.types.graphql import OperationType

from api.auth import InvalidToken, KeysUnavailable
from api.context import Context
from api.fanout import Admission, Ending, Key, Member, Run, Shared, fanout_of, sharing_key
from api.identity import Identity
from api.instruments import SUBSCRIBERS
from api.persisted import PersistedDocuments
from api.requests import RequestRefused, request_fields, select_operation
from readmodel.notifications import SubscriberFellBehind

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


def _refusal(
    payload: object, persisted: PersistedDocuments, identity: Identity
) -> dict[str, Any] | None:
    """Why an operation sent over a WebSocket is refused before it starts, as a formatted
    error; None when the schema may run it. A syntax error is answered here: strawberry's
    parser cache raises it outside the stream, and the operation just completed.
    A persisted query's document is filled into `payload` in place, where strawberry
    reads it (api/persisted.py)."""
    try:
        expanded = persisted.expand(payload)
        if isinstance(payload, dict) and isinstance(expanded, dict):
            payload.update(expanded)
        query, _, operation_name, _ = request_fields(payload)
        persisted.admit(query, identity)
        operation = select_operation(query, operation_name)
    except RequestRefused as refused:
        return refused.formatted
    if isinstance(operation, GraphQLError):
        return {**operation.formatted, "extensions": {"code": "GRAPHQL_PARSE_FAILED"}}
    return None


def _group_run(schema: Any, root: Any, query: str, variables: Any, name: str | None) -> Run:
    """The group's run of an operation: the same document, with the group's context."""

    async def run(context: Shared) -> Any:
        return await schema.subscribe(
            query,
            variable_values=variables,
            context_value=context,
            root_value=root,
            operation_name=name,
        )

    return run


_INTERNAL = {"message": "Internal server error"}

# The close code both protocols use for "your credentials are not (or no longer) good".
UNAUTHENTICATED_CLOSE = 4403
# Close code 1013, "try again later": the issuer's keys could not be fetched.
TRY_AGAIN_LATER_CLOSE = 1013


class _SocketIdentity:
    """Settles a socket's identity from its `connection_init`, and closes the socket
    when that identity's token expires."""

    context: Context
    websocket: Any
    view: Any
    schema: Any
    root_value: Any
    _expiry: asyncio.Task[None] | None = None

    async def _identify(self, payload: object) -> str | None:
        """Set the context's identity from the payload; a close reason if it cannot be."""
        handshake = self.context.request.headers.get("authorization")
        try:
            self.context.identity = await self.view.connection_identity(payload, handshake)
        except InvalidToken as error:
            return f"Unauthenticated: {error.reason}"[:120]
        return None

    def _watch_expiry(self) -> None:
        expires_at = self.context.identity.expires_at
        if expires_at is not None and self._expiry is None:
            delay = (expires_at - datetime.now(UTC)).total_seconds()
            self._expiry = asyncio.create_task(self._close_when_expired(delay))

    async def _close_when_expired(self, delay: float) -> None:
        await asyncio.sleep(max(delay, 0))
        with contextlib.suppress(Exception):
            await self.websocket.close(code=UNAUTHENTICATED_CLOSE, reason="Token expired")

    async def _deliver_shared(
        self, key: Key, identity: Identity, run: Run, prefix: str, gone: Callable[[], bool]
    ) -> tuple[Ending, Member]:
        """Join the key's group and send its payloads as frames (`prefix`, the payload,
        `}`) until it ends; how it ended. `gone`: the client ended the operation."""
        app = self.context.app
        fanout = fanout_of(app)
        member = fanout.join(
            key, identity, run, self.view.encode_json, limit=app.settings.subscriber_queue_size
        )
        socket = self.websocket.ws

        async def send(_: int, payload: str) -> None:
            if gone():
                raise asyncio.CancelledError  # the client ended it meanwhile
            try:
                await socket.send_text(prefix + payload + "}")
            except WebSocketDisconnect as disconnected:
                raise WebSocketDisconnected from disconnected

        try:
            with SUBSCRIBERS.track_inprogress():
                ending = await member.deliver(send)
        finally:
            fanout.leave(member)
        return ending, member

    async def _stop_watching(self) -> None:
        if self._expiry is not None and self._expiry is not asyncio.current_task():
            self._expiry.cancel()
            with contextlib.suppress(BaseException):
                await self._expiry


class TransportWSHandler(_SocketIdentity, BaseGraphQLTransportWSHandler[Context, None]):
    """graphql-transport-ws: a malformed message closes with 4400 as the protocol says
    (strawberry raised on some); an operation refused before it starts, a syntax error
    included, gets an `error` message, never a bare `complete`."""

    async def handle(self) -> None:
        try:
            await super().handle()
        finally:
            await self._stop_watching()

    async def handle_connection_init(self, message: Any) -> None:
        payload = message.get("payload", {})
        # Only a first, well-formed init is checked; the base class refuses the others.
        if (
            isinstance(payload, dict)
            and not self.connection_init_received
            and not self.connection_timed_out
        ):
            try:
                refused = await self._identify(payload)
            except KeysUnavailable:
                await self.websocket.close(code=TRY_AGAIN_LATER_CLOSE, reason="Try again later")
                return
            if refused is not None:
                if self.connection_init_timeout_task:
                    self.connection_init_timeout_task.cancel()
                await self.websocket.close(code=UNAUTHENTICATED_CLOSE, reason=refused)
                return
        await super().handle_connection_init(message)
        if self.connection_acknowledged:
            self._watch_expiry()

    async def handle_message(self, message: Any) -> None:
        if not _well_formed(message) or (
            message["type"] == "subscribe" and not isinstance(message.get("payload"), dict)
        ):
            await self.handle_invalid_message("Invalid message")
            return
        await super().handle_message(message)

    async def handle_subscribe(self, message: Any) -> None:
        if self.connection_acknowledged and message["id"] not in self.operations:
            refusal = _refusal(message["payload"], self.view.persisted, self.context.identity)
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

    async def run_operation(self, operation: Operation[Context, None]) -> None:
        """A subscription is first run as the caller's own (its admission, every check
        as before); if it may be shared it then joins its group (api/fanout.py)."""
        if select_operation(operation.query, operation.operation_name) is not (
            OperationType.SUBSCRIPTION
        ):
            await super().run_operation(operation)
            return
        admission = Admission.of(self.context)
        try:
            results = await self.schema.stream(
                operation.query,
                variable_values=operation.variables,
                context_value=admission,
                root_value=self.root_value,
                operation_name=operation.operation_name,
            )
            async with contextlib.aclosing(results):
                await self._send_result_stream(operation, results)
            if admission.shareable:
                await self._share(operation, admission.identity)
                return
            await operation.send_operation_message({"id": operation.id, "type": "complete"})
        except _OperationStreamClosed:
            return
        except WebSocketDisconnected:
            return  # the socket is gone: nothing to tell anyone
        except Exception as error:
            await self.handle_task_exception(error)
            with contextlib.suppress(Exception):
                await operation.send_operation_message({"id": operation.id, "type": "complete"})
            self.operations.pop(operation.id, None)
            raise

    async def _share(self, operation: Operation[Context, None], identity: Identity) -> None:
        key = sharing_key(operation.query, operation.operation_name, operation.variables, identity)
        if key is None:
            # Not shareable after all: run it as its own, as before.
            results = await self.schema.stream(
                operation.query,
                variable_values=operation.variables,
                context_value=self.context,
                root_value=self.root_value,
                operation_name=operation.operation_name,
            )
            async with contextlib.aclosing(results):
                await self._send_result_stream(operation, results)
            await operation.send_operation_message({"id": operation.id, "type": "complete"})
            return
        prefix = '{"id":' + self.view.encode_json(operation.id) + ',"type":"next","payload":'
        ending, member = await self._deliver_shared(
            key,
            identity,
            _group_run(
                self.schema,
                self.root_value,
                operation.query,
                operation.variables,
                operation.operation_name,
            ),
            prefix,
            lambda: operation.completed,
        )
        if ending == "error":
            await operation.send_operation_message(
                cast(Any, {"id": operation.id, "type": "error", "payload": member.errors})
            )
            return
        if ending == "behind":
            errors = member.fell_behind(lambda at: str(SubscriberFellBehind(at)))
            payload = {"data": None, "errors": errors}
            await operation.send_operation_message(
                cast(Any, {"id": operation.id, "type": "next", "payload": payload})
            )
        await operation.send_operation_message({"id": operation.id, "type": "complete"})


class LegacyWSHandler(_SocketIdentity, BaseGraphQLWSHandler[Context, None]):
    """graphql-ws (subscriptions-transport-ws): queries and mutations are executed once
    (strawberry only subscribed, and failed on them), and every `start` gets an answer:
    an `error` for a malformed or refused operation or a syntax error, where strawberry
    sent nothing."""

    async def handle(self) -> None:
        try:
            await super().handle()
        finally:
            await self._stop_watching()

    async def handle_message(self, message: Any) -> None:
        if _well_formed(message):  # the legacy protocol has no answer to a malformed message
            await super().handle_message(message)

    async def handle_connection_init(self, message: Any) -> None:
        payload = message.get("payload")
        if self.connection_acknowledged:
            # A second init could swap the socket's identity under running operations.
            await self.websocket.close(code=4429, reason="Too many initialisation requests")
            return
        if payload is None or isinstance(payload, dict):
            try:
                refused = await self._identify(payload)
            except KeysUnavailable:
                refused = "Try again later"
            if refused is not None:
                unavailable = refused == "Try again later"
                code = "AUTH_UNAVAILABLE" if unavailable else "UNAUTHENTICATED"
                await self.send_message(
                    {
                        "type": "connection_error",
                        "payload": {"message": refused, "extensions": {"code": code}},
                    }
                )
                close = TRY_AGAIN_LATER_CLOSE if unavailable else UNAUTHENTICATED_CLOSE
                await self.websocket.close(code=close, reason=refused)
                return
        await super().handle_connection_init(message)
        if self.connection_acknowledged:
            self._watch_expiry()

    async def handle_start(self, message: Any) -> None:
        if "id" not in message:
            return  # nothing to answer to
        if self.connection_acknowledged:
            refusal = _refusal(message.get("payload"), self.view.persisted, self.context.identity)
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
            await self._subscription(operation_id, query, operation_name, variables)
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

    async def _subscription(
        self,
        operation_id: str,
        query: str,
        operation_name: str | None,
        variables: dict[str, object] | None,
    ) -> None:
        """As strawberry runs a subscription, but first as the caller's own admission,
        then, if it may be shared, as a member of its group (api/fanout.py)."""
        admission = Admission.of(self.context)
        try:
            results = await self.schema.subscribe(
                query=query,
                variable_values=variables,
                operation_name=operation_name,
                context_value=admission,
                root_value=self.root_value,
            )
            self.subscriptions[operation_id] = results
            first = True
            async for result in results:
                if first and isinstance(result, PreExecutionError):
                    assert result.errors
                    await self.send_message(
                        {"type": "error", "id": operation_id, "payload": result.errors[0].formatted}
                    )
                    return
                await self.send_data_message(result, operation_id)
                first = False
            self.subscriptions.pop(operation_id, None)
            key = (
                sharing_key(query, operation_name, variables, admission.identity)
                if admission.shareable
                else None
            )
            if key is not None:
                prefix = '{"type":"data","id":' + self.view.encode_json(operation_id)
                ending, member = await self._deliver_shared(
                    key,
                    admission.identity,
                    _group_run(self.schema, self.root_value, query, variables, operation_name),
                    prefix + ',"payload":',
                    lambda: False,  # a `stop` cancels this task
                )
                if ending == "error":
                    first_error = member.errors[0] if member.errors else _INTERNAL
                    await self.send_message(
                        {"type": "error", "id": operation_id, "payload": first_error}
                    )
                    return
                if ending == "behind":
                    errors = member.fell_behind(lambda at: str(SubscriberFellBehind(at)))
                    payload = {"data": None, "errors": errors}
                    await self.send_message(
                        {"type": "data", "id": operation_id, "payload": payload}
                    )
            await self.send_message({"type": "complete", "id": operation_id})
        except asyncio.CancelledError:
            # As strawberry's: a `stop` or the end of the connection, answered `complete`.
            await self.send_message({"type": "complete", "id": operation_id})
        finally:
            self.subscriptions.pop(operation_id, None)
            self.tasks.pop(operation_id, None)

    async def send_message(self, message: Any) -> None:
        if message.get("type") == "error" and isinstance(message.get("payload"), dict):
            message = {**message, "payload": _coded(message["payload"])}
        await super().send_message(message)
