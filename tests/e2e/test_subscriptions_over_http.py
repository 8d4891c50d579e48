"""Subscriptions over HTTP, for clients that cannot open a WebSocket: the multipart
protocol Apollo Client speaks (`Accept: multipart/mixed;subscriptionSpec=1.0`),
against `bicameral serve`.

A real Apollo Client (npm, in node) hears a change a mutation makes and resumes
with `after` without a duplicate; the tests in Python check the wire format and
that the stream keeps the rules of a WebSocket subscription (auth, policy, a
refusal as an error, a client that goes away leaves no subscriber behind).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest

from tests.clients.run import run_node
from tests.e2e.conftest import Cluster, Server, migrated_and_serving, serve_env
from tests.e2e.test_subscriptions_e2e import until_subscribers

pytestmark = pytest.mark.elasticsearch


def test_apollo_client_hears_a_change_over_http_and_resumes_after_it_without_a_duplicate(
    server: Server,
) -> None:
    heard = run_node(
        "apollo_multipart_subscription.mjs",
        {"url": f"{server.url}/graphql", "token": server.token()},
    )

    [price_changed] = heard["first"]
    assert price_changed["id"] == heard["product"]
    assert price_changed["kind"] == "PriceChanged"
    assert price_changed["entityType"] == "PRODUCT"
    resumed = heard["resumed"]
    assert [n["kind"] for n in resumed] == ["PriceChanged", "PriceChanged"]
    positions = [int(n["position"]) for n in [price_changed, *resumed]]
    assert positions == sorted(set(positions)), "a duplicate, or out of order"
    versions = [n["version"] for n in [price_changed, *resumed]]
    assert versions == [versions[0], versions[0] + 1, versions[0] + 2]
    # A refused subscription reaches Apollo as its coded error, and the stream ends.
    assert heard["refused"] == {"codes": ["UNAUTHENTICATED"], "completed": True}


# --- the wire, read in Python ---

MULTIPART = "multipart/mixed;boundary=graphql;subscriptionSpec=1.0,application/json"
BOUNDARY = b"\r\n--graphql"
PART_TIMEOUT = 20.0  # for one expected part (heartbeats come every 5 s)

PRODUCT_CHANGED = """
subscription($id: ID!, $after: String) {
  productChanged(id: $id, after: $after) { entityType id version position kind }
}"""


@dataclass(frozen=True)
class Part:
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class Parts:
    """The parts of a multipart/mixed response, read as they arrive."""

    def __init__(self, response: httpx.Response) -> None:
        self.chunks = response.aiter_bytes()
        self.buffer = b""
        self.started = False
        self.ended = False

    async def _more(self) -> None:
        async with asyncio.timeout(PART_TIMEOUT):
            self.buffer += await anext(self.chunks)

    async def next(self) -> Part | None:
        """The next part, None after the closing delimiter. The stream opens with a
        delimiter (CRLF, `--graphql`); every part follows one, starting with the CRLF
        that ends its line; the closing delimiter is the last one followed by `--`."""
        while not self.started:
            if len(self.buffer) >= len(BOUNDARY):
                assert self.buffer.startswith(BOUNDARY), self.buffer[:40]
                self.buffer = self.buffer[len(BOUNDARY) :]
                self.started = True
            else:
                await self._more()
        while not self.ended:
            if self.buffer.startswith(b"--"):
                assert self.buffer == b"--\r\n", self.buffer
                self.ended = True
                break
            end = self.buffer.find(BOUNDARY)
            if end == -1:
                await self._more()
                continue
            raw, self.buffer = self.buffer[:end], self.buffer[end + len(BOUNDARY) :]
            assert raw.startswith(b"\r\n"), raw
            head, separator, body = raw[2:].partition(b"\r\n\r\n")
            assert separator, raw
            headers = {}
            for line in head.decode().split("\r\n"):
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            return Part(headers, body)
        return None

    async def payloads(self, count: int) -> list[dict[str, Any]]:
        """The next `count` non-heartbeat parts' payloads."""
        found = []
        while len(found) < count:
            part = await self.next()
            assert part is not None, f"the stream ended after {found}"
            if part.json != {}:
                found.append(part.json["payload"])
        return found


@asynccontextmanager
async def subscribed(
    server: Server, query: str, headers: dict[str, str] | None = None, **variables: Any
) -> AsyncIterator[tuple[httpx.Response, Parts]]:
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=30) as http,
        http.stream(
            "POST",
            "/graphql",
            json={"query": query, "variables": variables},
            headers={"accept": MULTIPART, **(server.headers() if headers is None else headers)},
        ) as response,
    ):
        yield response, Parts(response)


async def create_product(server: Server, sku: str) -> tuple[str, str]:
    """A new product's id and its creation's consistency token."""
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        response = await http.post(
            "/graphql",
            json={
                "query": "mutation($input: CreateProductInput!) { createProduct(input: $input) {"
                " ... on CreateProductSuccess { consistencyToken product { id } } } }",
                "variables": {"input": {"sku": sku, "name": sku, "price": 100, "currency": "EUR"}},
            },
            headers=server.headers(),
        )
    created = response.json()["data"]["createProduct"]
    return created["product"]["id"], created["consistencyToken"]


async def change_price(server: Server, product_id: str, price: int) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        response = await http.post(
            "/graphql",
            json={
                "query": "mutation($input: ChangePriceInput!) { changePrice(input: $input) {"
                " __typename } }",
                "variables": {"input": {"productId": product_id, "price": price}},
            },
            headers=server.headers(),
        )
    assert response.json()["data"]["changePrice"]["__typename"] == "ChangePriceSuccess"


@pytest.fixture(scope="module")
def hasty_server(
    elasticsearch_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """`bicameral serve` whose queries and mutations have one second each."""
    folder = tmp_path_factory.mktemp("multipart")
    env = serve_env(elasticsearch_url, folder, REQUEST_TIMEOUT="1")
    with migrated_and_serving(env, folder / "serve.log") as running:
        yield running


async def test_a_subscription_streams_multipart_parts_each_a_payload_with_its_length(
    hasty_server: Server,
) -> None:
    product, token = await create_product(hasty_server, "WIRE-1")
    async with subscribed(hasty_server, PRODUCT_CHANGED, id=product, after=token) as (
        response,
        parts,
    ):
        assert response.status_code == 200
        content_type = response.headers["content-type"]
        assert content_type.startswith("multipart/mixed")
        assert "boundary=graphql" in content_type
        assert "subscriptionSpec=1.0" in content_type
        heartbeat = await parts.next()  # sent at once, so the client knows it is heard
        assert heartbeat is not None and heartbeat.json == {}
        await change_price(hasty_server, product, 250)
        part = await parts.next()
        while part is not None and part.json == {}:
            part = await parts.next()

    assert part is not None
    assert part.headers["content-type"] == "application/json; charset=utf-8"
    assert int(part.headers["content-length"]) == len(part.body)
    note = part.json["payload"]["data"]["productChanged"]
    assert set(part.json) == {"payload"}
    assert note["id"] == product
    assert note["kind"] == "PriceChanged"
    assert int(note["position"]) > int(token)


async def test_no_request_deadline_cuts_a_subscription_over_http(hasty_server: Server) -> None:
    product, token = await create_product(hasty_server, "LONG-1")
    async with subscribed(hasty_server, PRODUCT_CHANGED, id=product, after=token) as (_, parts):
        # Three times REQUEST_TIMEOUT with nothing to say but heartbeats...
        await asyncio.sleep(3)
        await change_price(hasty_server, product, 300)
        # ...and the stream still delivers.
        [payload] = await parts.payloads(1)

    assert payload["data"]["productChanged"]["kind"] == "PriceChanged"


async def test_a_refused_subscription_gets_its_coded_error_and_the_stream_ends(
    hasty_server: Server,
) -> None:
    anonymous: dict[str, str] = {}
    cases = [
        # The policy: the whole feed is staff's.
        ("subscription { changes { id } }", anonymous, {}, "UNAUTHENTICATED"),
        (PRODUCT_CHANGED, None, {"id": "P-1", "after": "nope"}, "BAD_USER_INPUT"),
        ("subscription { nothing }", None, {}, "GRAPHQL_VALIDATION_FAILED"),
    ]
    for query, headers, variables, code in cases:
        async with subscribed(hasty_server, query, headers, **variables) as (response, parts):
            assert response.status_code == 200
            [payload] = await parts.payloads(1)
            assert await parts.next() is None, "the stream goes on after its refusal"
        assert payload["data"] is None
        assert [e["extensions"]["code"] for e in payload["errors"]] == [code], payload


async def test_a_bad_token_is_refused_before_any_stream_starts(hasty_server: Server) -> None:
    headers = {"authorization": "Bearer not-a-token"}
    async with subscribed(hasty_server, "subscription { changes { id } }", headers) as (
        response,
        _,
    ):
        await response.aread()

    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_the_stream_ends_with_unauthenticated_when_the_token_expires(
    hasty_server: Server,
) -> None:
    short = {"authorization": f"Bearer {hasty_server.token(ttl=timedelta(seconds=3))}"}
    async with subscribed(hasty_server, "subscription { changes { id } }", short) as (_, parts):
        [payload] = await parts.payloads(1)
        assert await parts.next() is None

    assert payload["data"] is None
    [error] = payload["errors"]
    assert error["extensions"]["code"] == "UNAUTHENTICATED"
    assert "after" in error["message"]


async def test_a_client_that_goes_away_leaves_no_subscriber_behind(
    hasty_server: Server,
) -> None:
    await until_subscribers(hasty_server, 0)
    for _ in range(5):
        async with subscribed(hasty_server, "subscription { changes { id } }") as (_, parts):
            await until_subscribers(hasty_server, 1)
            assert await parts.next() is not None  # the first heartbeat
    await until_subscribers(hasty_server, 0)


async def test_a_query_sent_with_the_multipart_accept_answers_plain_json(
    hasty_server: Server,
) -> None:
    async with httpx.AsyncClient(base_url=hasty_server.url, timeout=30) as http:
        response = await http.post(
            "/graphql", json={"query": "{ __typename }"}, headers={"accept": MULTIPART}
        )

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json()["data"] == {"__typename": "Query"}


@pytest.mark.postgres
async def test_a_subscriber_over_http_on_one_process_hears_changes_made_through_another(
    postgres_cluster: Cluster,
) -> None:
    writer, reader = postgres_cluster.apis
    product, token = await create_product(writer, "CROSS-HTTP-1")
    async with subscribed(reader, PRODUCT_CHANGED, id=product, after=token) as (_, parts):
        await change_price(writer, product, 210)
        await change_price(writer, product, 220)
        payloads = await parts.payloads(2)

    notes = [p["data"]["productChanged"] for p in payloads]
    assert [n["kind"] for n in notes] == ["PriceChanged", "PriceChanged"]
    assert int(token) < int(notes[0]["position"]) < int(notes[1]["position"])
