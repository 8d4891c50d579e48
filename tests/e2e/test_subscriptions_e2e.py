"""Subscriptions over real sockets, between real processes, with a real GraphQL client.

`tests/integration/test_subscriptions.py` drives the change hub in process; here
`bicameral serve` and `bicameral worker` run as child processes, writes go in as
HTTP mutations, and notifications come out over WebSockets through gql, on both
protocols. On PostgreSQL the worker runs alone and two API processes share the
database, so a notification crosses processes by LISTEN/NOTIFY (and the poll).

Every client here is an admin (a token signed with the deployment's local key): the
`changes` feed and the mutations are staff work; who may hear what is
tests/e2e/test_identity.py's and the policy tests' subject.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import websockets
from gql import Client, GraphQLRequest
from gql.client import AsyncClientSession
from gql.transport.exceptions import TransportQueryError
from gql.transport.websockets import WebsocketsTransport

from tests.e2e.conftest import Cluster, Server

pytestmark = pytest.mark.elasticsearch

TRANSPORT_WS = "graphql-transport-ws"  # the current protocol
LEGACY_WS = "graphql-ws"  # subscriptions-transport-ws, still spoken by many clients
PROTOCOLS = [TRANSPORT_WS, LEGACY_WS]

# Bounds: every wait below has one of these deadlines.
NOTE_TIMEOUT = 20.0  # for one expected notification (the worker polls every 0.2 s)
BULK_TIMEOUT = 150.0  # for the 1,000-change run as a whole

CHANGES = """
subscription($types: [EntityType!], $after: String) {
  changes(types: $types, after: $after) { entityType id version position kind }
}"""

PRODUCT_CHANGED = """
subscription($id: ID!, $after: String) {
  productChanged(id: $id, after: $after) { entityType id version position kind }
}"""

CREATE_PRODUCT = """
mutation($input: CreateProductInput!) {
  createProduct(input: $input) {
    __typename
    ... on CreateProductSuccess { consistencyToken product { id version } }
    ... on Error { code message }
  }
}"""

CHANGE_PRICE = """
mutation($input: ChangePriceInput!) {
  changePrice(input: $input) {
    __typename
    ... on ChangePriceSuccess { consistencyToken product { id version } }
    ... on Error { code message }
  }
}"""

REGISTER_CUSTOMER = """
mutation($input: RegisterCustomerInput!) {
  registerCustomer(input: $input) {
    __typename
    ... on RegisterCustomerSuccess { consistencyToken customer { id } }
    ... on Error { code message }
  }
}"""


# --- writing, over HTTP ---


@dataclass(frozen=True)
class Written:
    """What a mutation returned, as the notification of its one event must show it."""

    entity_type: str
    id: str
    version: int
    position: int
    kind: str

    def as_note(self) -> dict[str, Any]:
        return {
            "entityType": self.entity_type,
            "id": self.id,
            "version": self.version,
            "position": str(self.position),
            "kind": self.kind,
        }


async def graphql(http: httpx.AsyncClient, query: str, **variables: Any) -> dict[str, Any]:
    response = await http.post("/graphql", json={"query": query, "variables": variables})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert "errors" not in body, body["errors"]
    return body


async def create_product(http: httpx.AsyncClient, sku: str, price: int = 100) -> Written:
    """createProduct without initialStock: exactly one event, ProductCreated."""
    result = (
        await graphql(
            http,
            CREATE_PRODUCT,
            input={"sku": sku, "name": f"Product {sku}", "price": price, "currency": "EUR"},
        )
    )["data"]["createProduct"]
    assert result["__typename"] == "CreateProductSuccess", result
    product = result["product"]
    return Written(
        "PRODUCT",
        product["id"],
        product["version"],
        int(result["consistencyToken"]),
        "ProductCreated",
    )


async def change_price(http: httpx.AsyncClient, product_id: str, price: int) -> Written:
    result = (await graphql(http, CHANGE_PRICE, input={"productId": product_id, "price": price}))[
        "data"
    ]["changePrice"]
    assert result["__typename"] == "ChangePriceSuccess", result
    product = result["product"]
    return Written(
        "PRODUCT",
        product["id"],
        product["version"],
        int(result["consistencyToken"]),
        "PriceChanged",
    )


async def register_customer(http: httpx.AsyncClient, email: str) -> int:
    result = (await graphql(http, REGISTER_CUSTOMER, input={"email": email, "name": email}))[
        "data"
    ]["registerCustomer"]
    assert result["__typename"] == "RegisterCustomerSuccess", result
    return int(result["consistencyToken"])


def notes_of(writes: Iterable[Written]) -> list[dict[str, Any]]:
    """What a subscriber must hear for these writes: each once, in position order."""
    return [w.as_note() for w in sorted(writes, key=lambda w: w.position)]


@asynccontextmanager
async def http_client(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30, headers=server.headers()) as http:
        yield http


# --- the service's own gauges ---


async def gauges(server: Server) -> dict[str, float]:
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(f"{server.url}/metrics")
    assert response.status_code == 200, response.text
    found = {}
    for line in response.text.splitlines():
        match = re.fullmatch(r"(bicameral_\w+) (\S+)", line)
        if match:
            found[match[1]] = float(match[2])
    return found


async def until_subscribers(server: Server, count: int, timeout: float = 10.0) -> None:
    """Wait until the server's change hub serves `count` subscriptions."""
    deadline = time.monotonic() + timeout
    while (now := (await gauges(server))["bicameral_subscribers"]) != count:
        assert time.monotonic() < deadline, f"{now:g} subscribers after {timeout} s, not {count}"
        await asyncio.sleep(0.05)


# --- listening, over WebSockets ---


def ws_url(server: Server) -> str:
    return server.url.replace("http://", "ws://", 1) + "/graphql"


@asynccontextmanager
async def ws_session(server: Server, protocol: str) -> AsyncIterator[AsyncClientSession]:
    """A gql session over one WebSocket that speaks `protocol` and nothing else."""
    transport = WebsocketsTransport(
        url=ws_url(server),
        subprotocols=[protocol],
        init_payload=server.init_payload(),
        connect_timeout=10,
        close_timeout=10,
    )
    client = Client(transport=transport, fetch_schema_from_transport=False, execute_timeout=30)
    async with client as session:
        assert transport.subprotocol == protocol
        yield session


async def hear(
    session: AsyncClientSession,
    query: str,
    count: int,
    heard: list[dict[str, Any]],
    **variables: Any,
) -> None:
    """Subscribe, and append each notification to `heard` until there are `count`."""
    request = GraphQLRequest(query, variable_values=variables)
    async with aclosing(session.subscribe(request)) as stream:
        async for data in stream:
            heard.append(next(iter(data.values())))
            if len(heard) >= count:
                return


@dataclass
class Listening:
    """A subscription that runs in the background, collecting what it hears."""

    task: asyncio.Task[None]
    heard: list[dict[str, Any]]
    count: int

    async def until(self, count: int, timeout: float) -> None:
        """Wait until `count` notifications are in (the subscription goes on)."""
        deadline = time.monotonic() + timeout
        while len(self.heard) < count:
            if self.task.done():
                self.task.result()  # raises what ended it, if anything did
                pytest.fail(f"the subscription ended after {len(self.heard)} notifications")
            if time.monotonic() > deadline:
                pytest.fail(f"heard {len(self.heard)} of {count} in {timeout} s")
            await asyncio.sleep(0.02)

    async def all(self, timeout: float) -> list[dict[str, Any]]:
        """Wait for every notification it was started for, then give them."""
        try:
            async with asyncio.timeout(timeout):
                await self.task
        except TimeoutError:
            pytest.fail(
                f"heard {len(self.heard)} of {self.count} in {timeout} s: {self.heard[-3:]}"
            )
        return self.heard


@asynccontextmanager
async def listening(
    session: AsyncClientSession, query: str, count: int, **variables: Any
) -> AsyncIterator[Listening]:
    heard: list[dict[str, Any]] = []
    task = asyncio.create_task(hear(session, query, count, heard, **variables))
    try:
        yield Listening(task, heard, count)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


# --- on SQLite: one `bicameral serve` with its embedded worker ---


async def test_subscribers_on_both_protocols_hear_each_change_in_order(server: Server) -> None:
    count = 7
    async with (
        ws_session(server, TRANSPORT_WS) as current,
        ws_session(server, LEGACY_WS) as legacy,
        listening(current, CHANGES, count) as on_current,
        listening(legacy, CHANGES, count) as on_legacy,
        http_client(server) as http,
    ):
        await until_subscribers(server, 2)
        created = [await create_product(http, f"BOTH-{i}") for i in range(5)]
        repriced = [await change_price(http, created[i].id, 250 + i) for i in (0, 3)]
        heard_current = await on_current.all(NOTE_TIMEOUT)
        heard_legacy = await on_legacy.all(NOTE_TIMEOUT)

    expected = notes_of(created + repriced)
    assert [n["kind"] for n in expected] == ["ProductCreated"] * 5 + ["PriceChanged"] * 2
    assert heard_current == expected
    assert heard_legacy == expected


# --- on PostgreSQL: two API processes and a separate worker, sharing the database ---


@pytest.mark.postgres
async def test_each_notification_can_be_read_back_from_search_without_a_token(
    postgres_cluster: Cluster,
) -> None:
    writer, reader = postgres_cluster.apis
    read_back = """
    query($sku: String!, $price: Int!) {
      product(sku: $sku) { id version price { amount } }
      products(filter: {minPrice: $price, maxPrice: $price}) {
        edges { node { id version } }
      }
    }"""
    async with (
        http_client(writer) as http,
        http_client(reader) as http_reader,
        ws_session(reader, TRANSPORT_WS) as session,
    ):
        product = await create_product(http, "REQUERY-0", price=100)
        request = GraphQLRequest(
            PRODUCT_CHANGED, variable_values={"id": product.id, "after": str(product.position)}
        )
        async with aclosing(session.subscribe(request)) as stream:
            for i in range(50):
                price = 90_000 + i  # no other product in this module costs that much
                changed = await change_price(http, product.id, price)
                async with asyncio.timeout(NOTE_TIMEOUT):
                    note = (await anext(stream))["productChanged"]
                assert note == changed.as_note()
                # No consistencyToken: the notification itself says the read side has
                # it. Both reads are searches (no realtime GET), on either process.
                read = await graphql(
                    (http, http_reader)[i % 2], read_back, sku="REQUERY-0", price=price
                )
                assert read["data"]["product"] == {
                    "id": product.id,
                    "version": note["version"],
                    "price": {"amount": price},
                }
                assert read["data"]["products"]["edges"] == [
                    {"node": {"id": product.id, "version": note["version"]}}
                ]


@pytest.mark.postgres
async def test_a_subscriber_that_reconnects_after_its_last_position_misses_nothing(
    postgres_cluster: Cluster,
) -> None:
    writer, reader = postgres_cluster.apis
    first_part, while_away, live = 15, 25, 10
    async with http_client(writer) as http:
        product = await create_product(http, "RESUME-0")
        writes: list[Written] = []

        async def write(n: int) -> None:
            for _ in range(n):
                writes.append(await change_price(http, product.id, 500 + len(writes)))

        since_creation = {"id": product.id, "after": str(product.position)}
        async with (
            ws_session(reader, LEGACY_WS) as session,
            listening(session, PRODUCT_CHANGED, first_part, **since_creation) as sub,
        ):
            # Changes keep coming while the subscriber leaves after the first of them.
            writing = asyncio.create_task(write(first_part + while_away))
            heard_before = await sub.all(NOTE_TIMEOUT * 2)
        # The socket is closed; the rest is made while nobody listens.
        async with asyncio.timeout(NOTE_TIMEOUT * 2):
            await writing
        await until_subscribers(reader, 0)

        resume_from = heard_before[-1]["position"]
        missed = len(writes) - first_part
        async with (
            ws_session(reader, TRANSPORT_WS) as session,
            listening(
                session, PRODUCT_CHANGED, missed + live, id=product.id, after=resume_from
            ) as sub,
        ):
            await sub.until(missed, NOTE_TIMEOUT)  # replayed from the outbox
            await write(live)  # then live ones
            heard_after = await sub.all(NOTE_TIMEOUT)

    assert missed >= while_away
    assert heard_before == notes_of(writes[:first_part])
    assert heard_after == notes_of(writes[first_part:])


@pytest.mark.postgres
async def test_a_subscriber_on_one_process_hears_all_1000_changes_made_through_another(
    postgres_cluster: Cluster,
) -> None:
    writer, reader = postgres_cluster.apis
    products, price_changes_each, lanes = 250, 3, 4
    count = products * (1 + price_changes_each)

    async def lane(http: httpx.AsyncClient, lane: int) -> list[Written]:
        # One product's changes stay in one lane, so no two writes race on one product;
        # the lanes run side by side, so transactions commit out of position order.
        writes: list[Written] = []
        for n in range(lane, products, lanes):
            created = await create_product(http, f"BULK-{n}")
            writes.append(created)
            for p in range(price_changes_each):
                writes.append(await change_price(http, created.id, 1000 + 10 * n + p))
            if n % 25 == 0:  # another kind of change, which `types: [PRODUCT]` leaves out
                await register_customer(http, f"bulk-{n}@example.com")
        return writes

    async with (
        ws_session(reader, TRANSPORT_WS) as session,
        listening(session, CHANGES, count, types=["PRODUCT"]) as subscriber,
        http_client(writer) as http,
    ):
        await until_subscribers(reader, 1)
        async with asyncio.timeout(BULK_TIMEOUT), asyncio.TaskGroup() as lanes_running:
            running = [lanes_running.create_task(lane(http, i)) for i in range(lanes)]
        writes = [w for task in running for w in task.result()]
        heard = await subscriber.all(BULK_TIMEOUT)

    assert len(writes) == count
    positions = [int(n["position"]) for n in heard]
    assert len(set(positions)) == count, "a change was heard twice"
    assert positions == sorted(positions), "changes were heard out of position order"
    assert heard == notes_of(writes)


@pytest.mark.postgres
async def test_a_thousand_subscribe_and_disconnect_cycles_leave_no_subscriber_or_task(
    postgres_cluster: Cluster,
) -> None:
    writer, server = postgres_cluster.apis
    async with http_client(writer) as http:
        product = await create_product(http, "CYCLES-0")
    # Resuming just before the product's creation: each subscription hears it at once.
    variables = {"id": product.id, "after": str(product.position - 1)}
    expected = product.as_note()
    subscribe = {"query": PRODUCT_CHANGED, "variables": variables}
    init = json.dumps({"type": "connection_init", "payload": server.init_payload()})

    async def with_gql(protocol: str) -> None:
        # The client's own way out: `complete` (or `stop`), then the close handshake.
        heard: list[dict[str, Any]] = []
        async with ws_session(server, protocol) as session:
            await hear(session, PRODUCT_CHANGED, 1, heard, **variables)
        assert heard == [expected]

    async def dropping_at_once() -> None:
        # Subscribe and hang up straight away: the server may not have started it yet.
        async with websockets.connect(ws_url(server), subprotocols=[TRANSPORT_WS]) as ws:
            await ws.send(init)
            assert json.loads(await ws.recv())["type"] == "connection_ack"
            await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": subscribe}))

    async def dropping_mid_stream() -> None:
        # Hear one notification, then close the socket without saying `stop`.
        async with websockets.connect(ws_url(server), subprotocols=[LEGACY_WS]) as ws:
            await ws.send(init)
            assert json.loads(await ws.recv())["type"] == "connection_ack"
            await ws.send(json.dumps({"id": "1", "type": "start", "payload": subscribe}))
            while (message := json.loads(await ws.recv()))["type"] == "ka":
                pass
            assert message["payload"]["data"]["productChanged"] == expected

    kinds = [
        lambda: with_gql(TRANSPORT_WS),
        lambda: with_gql(LEGACY_WS),
        dropping_at_once,
        dropping_mid_stream,
    ]
    cycles, lanes = 1000, 4

    async def lane(lane: int) -> None:
        for n in range(lane, cycles, lanes):
            # Each lane goes through every kind; side by side, lanes run different kinds.
            await kinds[(n // lanes + n) % len(kinds)]()

    peak = 0.0

    async def watch() -> None:
        nonlocal peak
        for _ in range(10_000):
            peak = max(peak, (await gauges(server))["bicameral_subscribers"])
            await asyncio.sleep(0.05)

    before = await gauges(server)
    watching = asyncio.create_task(watch())
    try:
        async with asyncio.timeout(180), asyncio.TaskGroup() as running:
            for i in range(lanes):
                running.create_task(lane(i))
    finally:
        watching.cancel()
        await asyncio.gather(watching, return_exceptions=True)
    # The server finishes its side of each close by itself; give it a moment.
    done = time.monotonic()
    while True:
        after = await gauges(server)
        settled = (
            after["bicameral_subscribers"] == 0
            and after["bicameral_asyncio_tasks"] <= before["bicameral_asyncio_tasks"]
        )
        if settled or time.monotonic() > done + 10:
            break
        await asyncio.sleep(0.2)
    print(
        f"\n{cycles} cycles: subscribers {before['bicameral_subscribers']:g} before, "
        f"{peak:g} at most during, {after['bicameral_subscribers']:g} after; asyncio tasks "
        f"{before['bicameral_asyncio_tasks']:g} before, {after['bicameral_asyncio_tasks']:g} "
        f"after ({time.monotonic() - done:.1f} s after the last cycle)"
    )
    assert peak >= 1, "the gauge never saw the subscriptions the cycles held open"
    assert after["bicameral_subscribers"] == 0
    assert after["bicameral_asyncio_tasks"] <= before["bicameral_asyncio_tasks"]


@pytest.mark.postgres
@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_resume_point_that_is_no_position_gets_a_bad_user_input_error(
    postgres_cluster: Cluster, protocol: str
) -> None:
    server = postgres_cluster.apis[0]
    async with http_client(server) as http:
        product = await create_product(http, f"BADARG-{protocol.upper()}")
    heard: list[dict[str, Any]] = []
    async with ws_session(server, protocol) as session:
        with pytest.raises(TransportQueryError) as refused:
            async with asyncio.timeout(NOTE_TIMEOUT):
                await hear(session, CHANGES, 1, [], after="abc")
        # The error ended that subscription, not the connection: it still serves.
        async with asyncio.timeout(NOTE_TIMEOUT):
            await hear(
                session, PRODUCT_CHANGED, 1, heard, id=product.id, after=str(product.position - 1)
            )
    assert refused.value.errors is not None
    [error] = refused.value.errors
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["argument"] == "after"
    assert "position" in error["message"]
    assert heard == [product.as_note()]
