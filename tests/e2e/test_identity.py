"""Who is calling, against the running service: tokens over HTTP and in a WebSocket's
`connection_init` (both protocols, each client convention), a socket closed with
4403 when its token expires, and a reconnect with `after` that misses nothing.

Tokens come from `bicameral token`, signed with the key `bicameral serve` made in
the deployment's DATA_DIR. The WebSocket is spoken by hand (the `websockets`
client), so close codes and protocol messages are seen as they are sent.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from tests.e2e.conftest import BIN, Server, migrated_and_serving, serve_env

pytestmark = pytest.mark.elasticsearch

TRANSPORT_WS = "graphql-transport-ws"
LEGACY_WS = "graphql-ws"
PROTOCOLS = [TRANSPORT_WS, LEGACY_WS]
TIMEOUT = 20.0  # for any one expected message or close (the worker polls every 0.2 s)

PRODUCT_CHANGED = """
subscription($id: ID!, $after: String) {
  productChanged(id: $id, after: $after) { id version position kind }
}"""

CREATE_PRODUCT = """
mutation($input: CreateProductInput!) {
  createProduct(input: $input) {
    __typename
    ... on CreateProductSuccess { consistencyToken product { id } }
  }
}"""

CHANGE_PRICE = """
mutation($input: ChangePriceInput!) {
  changePrice(input: $input) { __typename ... on ChangePriceSuccess { consistencyToken } }
}"""


@pytest.fixture(scope="module")
def server(elasticsearch_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("identity")
    # No clock skew, so a token is expired the second its `exp` has passed.
    env = serve_env(elasticsearch_url, folder, AUTH_CLOCK_SKEW="0")
    with migrated_and_serving(env, folder / "serve.log") as s:
        yield s


def token(server: Server, role: str, ttl: str = "1h", **options: str) -> str:
    """A token from `bicameral token`, with the server's DATA_DIR (its signing key)."""
    extra = [part for name, value in options.items() for part in (f"--{name}", value)]
    done = subprocess.run(
        [BIN / "bicameral", "token", "--role", role, "--ttl", ttl, *extra],
        env=server.env,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


async def graphql(server: Server, query: str, bearer: str | None, **variables: Any) -> Any:
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        return await http.post(
            "/graphql", json={"query": query, "variables": variables}, headers=headers
        )


async def create_product(server: Server, staff: str) -> tuple[str, int]:
    response = await graphql(
        server,
        CREATE_PRODUCT,
        staff,
        input={
            "sku": f"ID-{uuid.uuid4().hex[:8]}",
            "name": "Lamp",
            "price": 100,
            "currency": "EUR",
        },
    )
    result = response.json()["data"]["createProduct"]
    assert result["__typename"] == "CreateProductSuccess", result
    return result["product"]["id"], int(result["consistencyToken"])


async def change_price(server: Server, staff: str, product_id: str, price: int) -> int:
    response = await graphql(
        server, CHANGE_PRICE, staff, input={"productId": product_id, "price": price}
    )
    result = response.json()["data"]["changePrice"]
    assert result["__typename"] == "ChangePriceSuccess", result
    return int(result["consistencyToken"])


# --- the two protocols, spoken by hand ---


@asynccontextmanager
async def connect(server: Server, protocol: str) -> AsyncIterator[ClientConnection]:
    url = server.url.replace("http://", "ws://", 1) + "/graphql"
    async with websockets.connect(url, subprotocols=[protocol], open_timeout=10) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == protocol
        yield ws


async def receive(ws: ClientConnection) -> dict[str, Any]:
    """The next protocol message, keep-alives skipped."""
    while True:
        async with asyncio.timeout(TIMEOUT):
            message: dict[str, Any] = json.loads(await ws.recv())
        if message["type"] not in ("ka", "ping", "pong"):
            return message


async def init(ws: ClientConnection, payload: dict[str, Any] | None) -> dict[str, Any]:
    await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
    return await receive(ws)


async def subscribe(ws: ClientConnection, protocol: str, **variables: Any) -> None:
    kind = "subscribe" if protocol == TRANSPORT_WS else "start"
    payload = {"query": PRODUCT_CHANGED, "variables": variables}
    await ws.send(json.dumps({"id": "1", "type": kind, "payload": payload}))


async def next_note(ws: ClientConnection) -> dict[str, Any]:
    message = await receive(ws)
    assert message["type"] in ("next", "data"), message
    note: dict[str, Any] = message["payload"]["data"]["productChanged"]
    return note


async def closed_with(ws: ClientConnection) -> int | None:
    """The close code the server ends the socket with (notes before it are dropped)."""
    async with asyncio.timeout(TIMEOUT):
        try:
            while True:
                await ws.recv()
        except websockets.ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None


# --- HTTP ---


async def test_over_http_an_expired_token_gets_401_and_a_fresh_one_is_served(
    server: Server,
) -> None:
    expired = token(server, "staff", ttl="1")
    await asyncio.sleep(2)  # past the token's exp (the server allows no clock skew)
    fresh = token(server, "staff")

    refused = await graphql(server, "{ __typename }", expired)
    served = await graphql(server, "{ __typename }", fresh)

    assert refused.status_code == 401
    assert refused.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert "expired" in refused.json()["errors"][0]["message"]
    assert served.status_code == 200


# --- WebSocket: connection_init ---


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_socket_without_a_token_is_anonymous_and_can_follow_a_product(
    server: Server, protocol: str
) -> None:
    product_id, position = await create_product(server, token(server, "staff"))

    async with connect(server, protocol) as ws:
        ack = await init(ws, {})
        await subscribe(ws, protocol, id=product_id, after=str(position - 1))
        note = await next_note(ws)

    assert ack["type"] == "connection_ack"
    assert (note["id"], note["position"], note["kind"]) == (
        product_id,
        str(position),
        "ProductCreated",
    )


def payload_shapes(bearer: str) -> list[dict[str, Any]]:
    """Where graphql-ws, Apollo and Hasura clients put the token."""
    return [
        {"Authorization": f"Bearer {bearer}"},
        {"authorization": f"Bearer {bearer}"},
        {"headers": {"Authorization": f"Bearer {bearer}"}},
        {"headers": {"authorization": f"Bearer {bearer}"}},
        {"authToken": bearer},
    ]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_valid_token_is_taken_in_every_client_convention(
    server: Server, protocol: str
) -> None:
    staff = token(server, "staff")
    answers = []
    for payload in payload_shapes(staff):
        async with connect(server, protocol) as ws:
            answers.append((await init(ws, payload))["type"])

    assert answers == ["connection_ack"] * len(payload_shapes(staff))


@pytest.mark.parametrize("shape", range(5))
async def test_a_bad_token_closes_a_transport_ws_socket_with_4403(
    server: Server, shape: int
) -> None:
    forged = token(server, "admin")[:-4] + "AAAA"

    async with connect(server, TRANSPORT_WS) as ws:
        await ws.send(
            json.dumps({"type": "connection_init", "payload": payload_shapes(forged)[shape]})
        )
        code = await closed_with(ws)

    assert code == 4403


async def test_a_bad_token_gets_a_connection_error_on_the_legacy_protocol(server: Server) -> None:
    forged = token(server, "admin")[:-4] + "AAAA"

    async with connect(server, LEGACY_WS) as ws:
        answer = await init(ws, {"Authorization": f"Bearer {forged}"})
        code = await closed_with(ws)

    assert answer["type"] == "connection_error"
    assert answer["payload"]["extensions"]["code"] == "UNAUTHENTICATED"
    assert code == 4403


# --- WebSocket: expiry and resuming ---


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_token_expiring_mid_subscription_closes_the_socket_with_4403(
    server: Server, protocol: str
) -> None:
    product_id, position = await create_product(server, token(server, "staff"))
    short = token(server, "customer", ttl="4")

    async with connect(server, protocol) as ws:
        assert (await init(ws, {"Authorization": f"Bearer {short}"}))["type"] == "connection_ack"
        await subscribe(ws, protocol, id=product_id, after=str(position - 1))
        heard = await next_note(ws)
        started = time.monotonic()
        code = await closed_with(ws)

    assert heard["position"] == str(position)
    assert code == 4403
    assert time.monotonic() - started < TIMEOUT


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_reconnecting_with_a_fresh_token_and_after_resumes_without_gap_or_duplicate(
    server: Server, protocol: str
) -> None:
    staff = token(server, "staff")
    product_id, created = await create_product(server, staff)
    written: list[int] = []

    async def write(count: int) -> None:
        for n in range(count):
            written.append(await change_price(server, staff, product_id, 200 + n))
            await asyncio.sleep(0.2)

    heard: list[int] = []
    async with connect(server, protocol) as ws:
        await init(ws, {"Authorization": f"Bearer {token(server, 'customer', ttl='5')}"})
        await subscribe(ws, protocol, id=product_id, after=str(created))
        writing = asyncio.create_task(write(40))  # goes on past the token's expiry
        with pytest.raises(websockets.ConnectionClosed) as closed:
            while True:
                heard.append(int((await next_note(ws))["position"]))
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403
    first_part = len(heard)

    async with connect(server, protocol) as ws:
        await init(ws, {"Authorization": f"Bearer {token(server, 'customer')}"})
        await subscribe(ws, protocol, id=product_id, after=str(heard[-1]))
        async with asyncio.timeout(TIMEOUT * 3):
            await writing
        while len(heard) < len(written):
            heard.append(int((await next_note(ws))["position"]))

    assert 0 < first_part < len(written)
    assert heard == written
