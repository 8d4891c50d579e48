"""Hostile documents against the running service: the fragment bomb is refused
with its code and freezes nobody, introspection still works, and an operation
that outlives its deadline answers DEADLINE_EXCEEDED.

Every request carries an admin's token: the documents' size and the deadline are
what is refused here, never the caller's right to `readModel` or a mutation."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from graphql import get_introspection_query

from tests.e2e.conftest import Server, migrated_and_serving, serve_env

pytestmark = pytest.mark.elasticsearch

# Generous bounds that only a frozen event loop could miss; they measure no speed.
ANSWER_WITHIN = 10.0

PRODUCTS = "{ products(first: 5) { totalCount edges { node { id sku } } } }"


def bomb(levels: int, leaf: str = "a: readModel { indexedUpTo }") -> str:
    """The issue's fragment bomb, 1.2 KB at 30 levels: each fragment spreads the
    next one twice, so expanded it holds 2^levels copies of the leaf."""
    fragments = [f"fragment F{i} on Query{{...F{i + 1} ...F{i + 1}}}" for i in range(levels)]
    return " ".join(["query{...F0}", *fragments, f"fragment F{levels} on Query{{{leaf}}}"])


def codes(body: dict[str, Any]) -> set[str]:
    return {error["extensions"]["code"] for error in body.get("errors") or ()}


def post(server: Server, query: str, timeout: float = ANSWER_WITHIN) -> httpx.Response:
    return httpx.post(
        f"{server.url}/graphql", json={"query": query}, headers=server.headers(), timeout=timeout
    )


def test_the_fragment_bomb_is_refused_with_its_codes_at_every_depth(server: Server) -> None:
    for levels in (10, 20, 30):
        with_alias = post(server, bomb(levels))
        without_alias = post(server, bomb(levels, leaf="readModel { indexedUpTo }"))

        assert with_alias.status_code in (200, 400), with_alias.text
        assert "data" not in with_alias.json()
        assert {"TOO_MANY_ALIASES", "TOO_MANY_FIELDS"} <= codes(with_alias.json())
        assert "data" not in without_alias.json()
        assert "TOO_MANY_FIELDS" in codes(without_alias.json())


async def test_health_and_other_queries_answer_while_the_bomb_is_sent_in_a_loop(
    server: Server,
) -> None:
    async with httpx.AsyncClient(
        base_url=server.url, timeout=ANSWER_WITHIN, headers=server.headers()
    ) as client:
        stop = asyncio.Event()
        refused = 0

        async def bombard() -> None:
            nonlocal refused
            while not stop.is_set():
                response = await client.post("/graphql", json={"query": bomb(30)})
                assert "TOO_MANY_ALIASES" in codes(response.json())
                refused += 1

        bombers = [asyncio.create_task(bombard()) for _ in range(2)]
        try:
            for _ in range(10):
                health = await client.get("/healthz")
                products = await client.post("/graphql", json={"query": PRODUCTS})

                assert health.json() == {"status": "ok"}
                assert products.status_code == 200
                assert "errors" not in products.json(), products.text
                assert products.json()["data"]["products"]["totalCount"] >= 0
        finally:
            stop.set()
            await asyncio.gather(*bombers)

        assert refused > 0  # the bomb really was being sent meanwhile


def test_graphiqls_introspection_query_works_over_http(server: Server) -> None:
    query = get_introspection_query(
        descriptions=True,
        specified_by_url=True,
        directive_is_repeatable=True,
        schema_description=True,
        input_value_deprecation=True,
    )

    response = post(server, query)

    assert response.status_code == 200
    body = response.json()
    assert "errors" not in body, body.get("errors")
    assert {"Query", "Mutation", "Product"} <= {
        t["name"] for t in body["data"]["__schema"]["types"]
    }
    assert body["extensions"]["cost"]["requested"] <= body["extensions"]["cost"]["limit"]


@pytest.fixture
def hasty_server(elasticsearch_url: str, tmp_path: Path) -> Iterator[Server]:
    """`bicameral serve` with a deadline of half a second, a consistency wait far
    longer than that, and no feed worker: no write ever reaches the read side."""
    env = serve_env(
        elasticsearch_url,
        tmp_path,
        REQUEST_TIMEOUT="0.5",
        CONSISTENCY_TIMEOUT="30",
        EMBEDDED_WORKER="false",
    )
    with migrated_and_serving(env, tmp_path / "serve.log") as running:
        yield running


def test_an_operation_past_its_deadline_answers_deadline_exceeded(hasty_server: Server) -> None:
    # A real write's token, which no worker applies: the wait would last
    # CONSISTENCY_TIMEOUT (30 s). (A token beyond the head answers stale at once.)
    created = post(
        hasty_server,
        'mutation { createProduct(input: {sku: "DEADLINE-1", name: "Held", price: 100,'
        ' currency: "EUR"}) { ... on CreateProductSuccess { consistencyToken } } }',
    ).json()["data"]["createProduct"]
    held = f'{{ products(consistencyToken: "{created["consistencyToken"]}") {{ totalCount }} }}'
    started = time.monotonic()

    response = post(hasty_server, held)

    assert time.monotonic() - started < ANSWER_WITHIN
    assert response.status_code == 200
    body = response.json()
    assert body["data"] is None  # the operation ran: not a request error
    assert codes(body) == {"DEADLINE_EXCEEDED"}
    assert "0.5 s" in body["errors"][0]["message"]
    # ...and the service goes on answering.
    assert post(hasty_server, PRODUCTS).json()["data"]["products"]["totalCount"] >= 0
