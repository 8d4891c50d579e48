"""The query budget on a running service with a budget of 20 a minute: over HTTP a
client over it answers 429 with `Retry-After` and `RATE_LIMITED`, and another
client (here: another address, named by X-Forwarded-For, which uvicorn trusts
from 127.0.0.1 by default, as from a reverse proxy on the same machine) goes on;
over a WebSocket, queries and subscriptions spend from the same bucket.

Every client here is anonymous on purpose (introspection and `productChanged` are
open to it): an anonymous client's budget is its address's, which is what the
X-Forwarded-For test turns on; a token holder's is its identity's."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from tests.e2e.conftest import Server, migrated_and_serving, serve_env

pytestmark = pytest.mark.elasticsearch

# Costs 12: `__schema` 1, `types` a list counted as 10 (1 + 10 x 1 for `name`).
TWELVE = "{ __schema { types { name } } }"
# Costs 6: the field and its five leaves.
SIX = 'subscription { productChanged(id: "p-1") { entityType id version position kind } }'
# Generous: only a hang could miss it.
ANSWER_WITHIN = 10.0


@pytest.fixture
def tight_server(elasticsearch_url: str, tmp_path: Path) -> Iterator[Server]:
    env = serve_env(elasticsearch_url, tmp_path, BUDGET_PER_MINUTE="20")
    with migrated_and_serving(env, tmp_path / "serve.log") as server:
        yield server


def post(server: Server, query: str, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{server.url}/graphql", json={"query": query}, headers=headers, timeout=ANSWER_WITHIN
    )


def budget(response: httpx.Response) -> dict[str, Any]:
    found: dict[str, Any] = response.json()["extensions"]["cost"]["budget"]
    return found


def test_a_client_over_its_budget_gets_429_and_rate_limited_with_retry_after(
    tight_server: Server,
) -> None:
    first = post(tight_server, TWELVE)
    refused = post(tight_server, TWELVE)

    assert first.status_code == 200, first.text
    assert budget(first) == {"perMinute": 20, "remaining": 8, "resetsIn": 36}
    assert refused.status_code == 429, refused.text
    body = refused.json()
    assert "data" not in body
    [error] = body["errors"]
    assert error["extensions"]["code"] == "RATE_LIMITED"
    retry_after = error["extensions"]["retryAfter"]
    assert isinstance(retry_after, int)
    assert 1 <= retry_after <= 60
    assert refused.headers["retry-after"] == str(retry_after)
    assert budget(refused)["remaining"] < 12


def test_another_client_is_not_affected_by_one_over_its_budget(tight_server: Server) -> None:
    post(tight_server, TWELVE)
    assert post(tight_server, TWELVE).status_code == 429

    elsewhere = post(tight_server, TWELVE, **{"X-Forwarded-For": "203.0.113.7"})

    assert elsewhere.status_code == 200, elsewhere.text
    assert "errors" not in elsewhere.json()
    assert budget(elsewhere)["remaining"] == 8
    assert post(tight_server, TWELVE).status_code == 429


async def test_over_a_websocket_queries_and_subscriptions_spend_and_are_refused_alike(
    tight_server: Server,
) -> None:
    url = tight_server.url.replace("http://", "ws://", 1) + "/graphql"
    async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"

        async def send(operation_id: str, query: str) -> None:
            message = {"id": operation_id, "type": "subscribe", "payload": {"query": query}}
            await ws.send(json.dumps(message))

        heard: dict[str, list[dict[str, Any]]] = {}

        async def until_complete(operation_id: str) -> list[dict[str, Any]]:
            async with asyncio.timeout(ANSWER_WITHIN):
                while not any(m["type"] == "complete" for m in heard.get(operation_id, ())):
                    message = json.loads(await ws.recv())
                    heard.setdefault(message.get("id", ""), []).append(message)
            return heard[operation_id]

        await send("query", TWELVE)  # 8 left
        [answered, _] = await until_complete("query")
        await send("subscribed", SIX)  # 2 left: it stays open, waiting for changes
        await send("refused", SIX)
        [refused, _] = await until_complete("refused")

    assert "errors" not in answered["payload"]
    assert answered["payload"]["extensions"]["cost"]["budget"]["remaining"] == 8
    [error] = refused["payload"]["errors"]
    assert error["extensions"]["code"] == "RATE_LIMITED"
    assert error["extensions"]["retryAfter"] >= 1
    assert "subscribed" not in heard
