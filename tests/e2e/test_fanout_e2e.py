"""Subscription fan-out over real sockets (api/fanout.py): `bicameral serve` on SQLite
with its embedded worker, many graphql-transport-ws subscribers of one document, and
customers whose identical documents must never share what the policy keeps apart."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
import pytest
import websockets

from api.identity import Role
from tests.e2e.conftest import Server
from tests.e2e.test_subscriptions_e2e import (
    LEGACY_WS,
    TRANSPORT_WS,
    create_product,
    graphql,
    http_client,
    notes_of,
    until_subscribers,
    ws_url,
)

pytestmark = pytest.mark.elasticsearch

TIMEOUT = 60.0  # a generous deadline for anything expected to arrive

CHANGES = """
subscription($types: [EntityType!]) {
  changes(types: $types) { entityType id version position kind }
}"""

ORDER_CHANGED = "subscription($id: ID!) { orderChanged(id: $id) { id kind order { id } } }"
ORDERS_OF = "subscription($customer: ID!) { ordersOfCustomer(customerId: $customer) { id kind } }"


class Socket:
    """One WebSocket connection, read by hand: every message is kept."""

    def __init__(self, ws: Any, protocol: str = TRANSPORT_WS) -> None:
        self.ws = ws
        self.protocol = protocol
        self.messages: dict[str, list[dict[str, Any]]] = {}
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for raw in self.ws:
            message = json.loads(raw)
            self.messages.setdefault(message.get("id", ""), []).append(message)

    async def subscribe(self, operation: str, query: str, **variables: Any) -> None:
        payload = {"query": query, "variables": variables}
        kind = "subscribe" if self.protocol == TRANSPORT_WS else "start"
        await self.ws.send(json.dumps({"id": operation, "type": kind, "payload": payload}))

    def of(self, id: str) -> list[dict[str, Any]]:
        return self.messages.get(id, [])

    def data(self, id: str) -> list[dict[str, Any]]:
        return [
            next(iter(m["payload"]["data"].values()))
            for m in self.of(id)
            if m["type"] in ("next", "data")
        ]

    async def until_kind(self, id: str, kind: str) -> list[dict[str, Any]]:
        """Wait until a notification of `kind` is in; every notification so far."""
        async with asyncio.timeout(TIMEOUT):
            while kind not in [n.get("kind") for n in self.data(id)]:
                if self.reader.done():
                    self.reader.result()
                    pytest.fail(f"the socket closed with {self.of(id)}")
                await asyncio.sleep(0.02)
        return self.data(id)

    async def until(self, id: str, count: int) -> list[dict[str, Any]]:
        async with asyncio.timeout(TIMEOUT):
            while len(self.of(id)) < count:
                if self.reader.done():
                    self.reader.result()
                    pytest.fail(f"the socket closed with {self.of(id)}")
                await asyncio.sleep(0.02)
        return self.of(id)


@asynccontextmanager
async def connected(
    server: Server, init: dict[str, str], protocol: str = TRANSPORT_WS
) -> AsyncIterator[Socket]:
    async with websockets.connect(ws_url(server), subprotocols=[protocol]) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": init}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        socket = Socket(ws, protocol)
        try:
            yield socket
        finally:
            socket.reader.cancel()
            await asyncio.gather(socket.reader, return_exceptions=True)


async def test_two_hundred_subscribers_of_one_document_each_hear_every_change_once_in_order(
    server: Server,
) -> None:
    subscribers = 200
    # Both protocols, members of the same groups: each gets its own frames.
    protocols = [TRANSPORT_WS, LEGACY_WS]
    async with AsyncExitStack() as stack:
        sockets = [
            await stack.enter_async_context(
                connected(server, server.init_payload(), protocols[i % 2])
            )
            for i in range(subscribers)
        ]
        for socket in sockets:
            await socket.subscribe("1", CHANGES, types=["PRODUCT"])
        await until_subscribers(server, subscribers, timeout=TIMEOUT)
        async with http_client(server) as http:
            written = [await create_product(http, f"FAN-{i}") for i in range(5)]
        expected = notes_of(written)
        for socket in sockets:
            await socket.until("1", len(expected))
        # A little longer: nothing more (no duplicate) may follow.
        await asyncio.sleep(0.5)
        for socket in sockets:
            assert socket.data("1") == expected
            kinds = {m["type"] for m in socket.of("1")}
            assert kinds == ({"next"} if socket.protocol == TRANSPORT_WS else {"data"})


async def _order_for(http: httpx.AsyncClient, customer: str, sku: str) -> str:
    body = await graphql(
        http,
        """mutation($input: PlaceOrderInput!) { placeOrder(input: $input) {
             __typename ... on PlaceOrderSuccess { order { id } } ... on Error { code } } }""",
        input={"customerId": customer, "lines": [{"sku": sku, "quantity": 1}]},
    )
    answer = body["data"]["placeOrder"]
    assert answer["__typename"] == "PlaceOrderSuccess", answer
    return str(answer["order"]["id"])


async def _register(server: Server, customer: str) -> None:
    headers = server.headers(Role.CUSTOMER, customer_id=customer, subject=customer)
    async with httpx.AsyncClient(base_url=server.url, timeout=30, headers=headers) as http:
        body = await graphql(
            http,
            """mutation($input: RegisterCustomerInput!) { registerCustomer(input: $input) {
                 __typename ... on Error { code } } }""",
            input={"email": f"{customer}@example.com", "name": customer},
        )
    assert body["data"]["registerCustomer"]["__typename"] == "RegisterCustomerSuccess", body


async def test_customers_with_the_same_document_hear_only_what_the_policy_lets_each_read(
    server: Server,
) -> None:
    ann, bob = "fan-ann", "fan-bob"
    for customer in (ann, bob):
        await _register(server, customer)
    async with http_client(server) as http:
        await graphql(
            http,
            """mutation($input: CreateProductInput!) { createProduct(input: $input) {
                 __typename } }""",
            input={
                "sku": "FAN-KETTLE",
                "name": "Kettle",
                "price": 100,
                "currency": "EUR",
                "initialStock": 50,
            },
        )
        anns_order = await _order_for(http, ann, "FAN-KETTLE")

        def as_customer(who: str) -> dict[str, str]:
            return server.init_payload(Role.CUSTOMER, customer_id=who, subject=who)

        async with (
            connected(server, as_customer(ann)) as ann_socket,
            connected(server, as_customer(bob)) as bob_socket,
        ):
            # The same document and variables from both: Ann's order.
            await ann_socket.subscribe("order", ORDER_CHANGED, id=anns_order)
            await bob_socket.subscribe("order", ORDER_CHANGED, id=anns_order)
            await ann_socket.subscribe("mine", ORDERS_OF, customer=ann)
            # Bob asking for Ann's orders with Ann's very document is refused,
            # though Ann's subscription to it is running.
            await until_subscribers(server, 3, timeout=TIMEOUT)
            await bob_socket.subscribe("anns", ORDERS_OF, customer=ann)
            await bob_socket.subscribe("mine", ORDERS_OF, customer=bob)
            await until_subscribers(server, 4, timeout=TIMEOUT)

            await graphql(
                http,
                """mutation($input: PayOrderInput!) { payOrder(input: $input) { __typename } }""",
                input={"orderId": anns_order},
            )
            bobs_order = await _order_for(http, bob, "FAN-KETTLE")

            # Ann may hear her order's placing too, if the read side had not shown
            # it yet when she subscribed; she hears its payment in any case.
            heard_by_ann = await ann_socket.until_kind("order", "OrderPaid")
            mine = await ann_socket.until_kind("mine", "OrderPaid")
            heard_by_bob = await bob_socket.until_kind("mine", "OrderPlaced")
            refused = await bob_socket.until("anns", 1)
            await asyncio.sleep(1.0)  # anything wrongly shared would be in by now

    assert [n["kind"] for n in heard_by_ann] in (["OrderPaid"], ["OrderPlaced", "OrderPaid"])
    assert {n["id"] for n in heard_by_ann} == {anns_order}
    assert {n["id"] for n in mine} == {anns_order}
    # Bob's subscription to Ann's order, with Ann's document and variables, heard nothing.
    assert bob_socket.of("order") == []
    assert heard_by_bob == [{"id": bobs_order, "kind": "OrderPlaced"}]
    errors = refused[0]["payload"]["errors"]
    assert [e["extensions"]["code"] for e in errors] == ["FORBIDDEN"]
